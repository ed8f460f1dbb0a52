"""transferjs retrain end to end: real EfficientNet-Lite0 features, real emoji images, TF.js bundle."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli


@pytest.fixture(scope="session")
def emoji_small(tmp_path_factory):
    from fixtures.emoji_dataset import build_emoji_dataset

    folder = tmp_path_factory.mktemp("emoji")
    build_emoji_dataset(folder, per_class=30)
    (folder / "objects" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "objects" / "README.txt").write_text("not an image")
    return folder


@pytest.mark.slow
def test_retrain_on_real_images_beats_chance_and_ships_a_labelled_bundle(effnet, emoji_small, tmp_path):
    from converter.runtimes.bundle_apps import predict_with_node

    out = tmp_path / "emoji"
    cache = tmp_path / "cache"
    proc = run_cli("retrain", effnet["result"].model.directory, "--data", emoji_small, "-o", out, "--cache-dir", cache)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["counts"] == {"activities": 30, "animals-nature": 30, "food-drink": 30, "objects": 30,
                                           "travel-places": 30}
    assert [s["path"].endswith("corrupt.png") for s in report["skipped"]] == [True]
    assert report["dataset"]["evaluated_on"] == "test" and report["dataset"]["split"]["test"] == 20  # 4 of 30 per class
    assert report["test"]["accuracy"] >= 0.5  # chance is 0.2
    assert report["backbone"]["feature_dim"] == 1280
    assert report["parity_tfjs"]["ok"]
    meta = json.loads((out / "tfjs" / "metadata.json").read_text())
    assert meta["labels"] == ["activities", "animals-nature", "food-drink", "objects", "travel-places"]
    assert meta["outputs"][0]["meaning"] == "probabilities"
    assert (out / "tfjs" / "head" / "model.json").is_file()
    page = (out / "report.html").read_text()
    assert f"{report['test']['accuracy']:.1%}" in page and "corrupt.png" in page
    for png in ("curves.png", "confusion.png"):
        assert (out / png).stat().st_size > 5_000
    apple = emoji_small / "food-drink" / sorted(p.name for p in (emoji_small / "food-drink").iterdir())[0]
    (result,) = predict_with_node(out / "tfjs", [apple], top=5)
    assert {t["label"] for t in result["top"]} == set(meta["labels"])
    # A second run reads every feature from the cache.
    cached = sorted(cache.rglob("*.npy"))
    assert len(cached) == 150
    proc = run_cli("retrain", effnet["result"].model.directory, "--data", emoji_small, "-o", out, "--cache-dir", cache,
                   "--overwrite", "--no-baseline")
    assert proc.returncode == 0, proc.stderr
    assert sorted(cache.rglob("*.npy")) == cached
    again = json.loads((out / "report.json").read_text())
    assert again["test"]["accuracy"] == report["test"]["accuracy"]  # same seed, same data: same result


def test_retrain_refuses_bad_data_before_training(tiny_converted, tmp_path):
    (tmp_path / "data" / "only").mkdir(parents=True)
    proc = run_cli("retrain", tiny_converted.model.directory, "--data", tmp_path / "data", "-o", tmp_path / "out")
    assert proc.returncode == 2 and "without images" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
