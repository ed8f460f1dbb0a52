"""transferjs retrain end to end: real EfficientNet-Lite0 features, real emoji images, TF.js bundle."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli


@pytest.mark.slow
def test_retrain_on_real_images_beats_chance_and_ships_a_labelled_bundle(emoji_retrained):
    from converter.runtimes.bundle_apps import predict_with_node

    out, data = emoji_retrained["out"], emoji_retrained["data"]
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["counts"] == {"activities": 30, "animals-nature": 30, "food-drink": 30, "objects": 30,
                                           "travel-places": 30}
    assert [s["path"].endswith("corrupt.png") for s in report["skipped"]] == [True]
    assert report["evaluation"]["kind"] == "k-fold" and report["dataset"]["split"]["check"] == 30  # fold 1 of 5
    assert report["test"]["accuracy"] >= 0.5 and report["test_frozen_features"]["accuracy"] >= 0.5  # chance is 0.2
    features = report["features"]  # multi-level (1280 + 112 + 192 + 320) only when the inner CV chose it
    assert report["backbone"]["feature_dim"] == features["dim"] == (1904 if features["used"] == "multi-level" else 1280)
    assert features["multi_level_dim"] == 1904 and set(features["cv"]) == {"default", "multi-level"}
    assert report["parity_tfjs"]["ok"] and report["parity_tfjs_backbone"]["ok"]
    ft = report["fine_tune"]
    assert ft["layers"] == 2 and ft["parameters"] > 100_000 and len(ft["history"]["val_loss"]) == 2
    assert ft["frozen_on_same_images"] == report["test_frozen_features"]["check_accuracy"]
    # kept only when at least as accurate as the frozen head on the same held-out images (ties: lower loss)
    better, worse = ft["test_accuracy"] > ft["frozen_on_same_images"], ft["test_accuracy"] < ft["frozen_on_same_images"]
    assert not (ft["kept"] and worse) and not (not ft["kept"] and better)
    assert ft["kept"] == ("refit_history" in ft)  # kept: fine-tuned again on every image
    check = report["runtime_check"]
    assert check["tfjs_accuracy"] == check["saved_model_accuracy"] == ft["test_accuracy" if ft["kept"] else "frozen_on_same_images"]
    meta = json.loads((out / "tfjs" / "metadata.json").read_text())
    assert meta["labels"] == ["activities", "animals-nature", "food-drink", "objects", "travel-places"]
    assert meta["outputs"][0]["meaning"] == "probabilities"
    for part in ("backbone", "head"):
        assert (out / "tfjs-transfer" / part / "model.json").is_file()
    page = (out / "report.html").read_text()
    assert f"{report['test']['accuracy']:.1%}" in page and "corrupt.png" in page
    for png in ("curves.png", "confusion.png"):
        assert (out / png).stat().st_size > 5_000
    apple = data / "food-drink" / sorted(p.name for p in (data / "food-drink").iterdir())[0]
    (result,) = predict_with_node(out / "tfjs", [apple], top=5)
    assert {t["label"] for t in result["top"]} == set(meta["labels"])
    assert not list(out.parent.glob(".*transferjs-run"))  # checkpoints go once the run is done


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_to_the_same_result_from_the_cache(emoji_retrained, tmp_path):
    """kill -9 during fine-tuning, then --resume: same model as the uninterrupted run, no feature recomputed."""
    import signal
    import subprocess
    import time

    from tests.conftest import RETRAIN_ARGS, ROOT, TRANSFERJS

    out, cache = tmp_path / "emoji", emoji_retrained["cache"]
    args = ["retrain", emoji_retrained["model_dir"], "--data", emoji_retrained["data"], "-o", out, "--cache-dir", cache,
            *RETRAIN_ARGS]
    cached = sorted(cache.rglob("*.npy"))
    assert len(cached) == 150
    proc = subprocess.Popen(TRANSFERJS + list(map(str, args)), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = tmp_path / ".emoji.transferjs-run" / "fine_tune.npz"
    deadline = time.monotonic() + 600
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # into the second fine-tuning epoch
    assert proc.poll() is None, "the run finished before it could be killed: " + proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # nothing half-written

    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "fine-tune: resumed after epoch 1" in resumed.stderr  # the linear head takes seconds: no checkpoint
    assert sorted(cache.rglob("*.npy")) == cached  # every feature came from the cache
    want = json.loads((emoji_retrained["out"] / "report.json").read_text())
    got = json.loads((out / "report.json").read_text())
    assert got["fine_tune"]["history"]["resumed_from_epoch"] == 1
    for key in ("val_loss", "loss"):
        assert got["fine_tune"]["history"][key] == pytest.approx(want["fine_tune"]["history"][key], rel=1e-3)
    assert got["test"]["accuracy"] == want["test"]["accuracy"]


def test_retrain_refuses_bad_data_before_training(tiny_converted, tmp_path):
    (tmp_path / "data" / "only").mkdir(parents=True)
    proc = run_cli("retrain", tiny_converted.model.directory, "--data", tmp_path / "data", "-o", tmp_path / "out")
    assert proc.returncode == 2 and "without images" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_feature_cache_key_survives_reconversion_and_follows_preprocessing(tiny_onnx, tiny_converted, tmp_path):
    """Converting the same model again hits the cache (node names differ); other preprocessing misses it."""
    import dataclasses

    from converter import convert
    from converter.model import ConvertedModel
    from retrain.api import _preprocessing
    from retrain.features import FeatureExtractor

    models = [ConvertedModel.load(tiny_converted.model.directory), convert(tiny_onnx, tmp_path / "again").model]
    models = [dataclasses.replace(m, preprocessing=_preprocessing(m)) for m in models]
    keys = [FeatureExtractor(m).key for m in models]
    assert keys[0] == keys[1]
    other = dataclasses.replace(models[1], preprocessing=dataclasses.replace(models[1].preprocessing, mean=(0.5, 0.5, 0.5)))
    assert FeatureExtractor(other).key != keys[0]
