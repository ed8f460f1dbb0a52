"""The feature store and the head fitted from it: chunked on disk, verified, equal to the in-memory head."""

from __future__ import annotations

import numpy as np
import pytest

from converter.errors import InputError
from retrain.feature_store import FEATURES, MANIFEST, FeatureStore, FeatureStoreWriter
from retrain.linear_probe import choose_and_fit, class_balanced_weights, fit_softmax_regression, stratified_folds
from retrain.streamed_probe import StreamedFeatures, choose_streamed, fit_streamed, predict_streamed


def _write(folder, x: np.ndarray, chunk: int = 7, ok=None) -> FeatureStore:
    with FeatureStoreWriter(folder, len(x), x.shape[1], key="k1") as writer:
        for start in range(0, len(x), chunk):
            writer.append(x[start : start + chunk], None if ok is None else ok[start : start + chunk])
        return writer.close()


def _blobs(n: int, dim: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = rng.normal(0, 1.0, (classes, dim))
    return (centres[y] + rng.normal(0, 1.5, (n, dim)) + 3.0).astype(np.float32), y


def test_a_store_reads_back_what_was_written_in_chunks_and_subsets(tmp_path):
    x, _ = _blobs(50, 6, 3)
    ok = np.arange(50) % 9 != 0
    store = _write(tmp_path / "s", x, ok=ok)
    assert np.array_equal(np.load(tmp_path / "s" / FEATURES), x)  # a standard .npy
    assert np.array_equal(np.concatenate([rows for _, rows in store.batches(rows=8)]), x)
    wanted = np.array([0, 3, 8, 9, 31, 49])
    got = list(store.batches(wanted, rows=8))
    assert np.array_equal(np.concatenate([p for p, _ in got]), wanted)
    assert np.array_equal(np.concatenate([r for _, r in got]), x[wanted])
    assert np.array_equal(store.take([49, 0, 31]), x[[49, 0, 31]])
    assert np.array_equal(FeatureStore(tmp_path / "s", key="k1").ok, ok)


def test_a_damaged_truncated_foreign_or_unfinished_store_is_refused(tmp_path):
    x, _ = _blobs(20, 4, 2)
    _write(tmp_path / "s", x)
    with pytest.raises(InputError, match="another model"):
        FeatureStore(tmp_path / "s", key="other")
    data = bytearray((tmp_path / "s" / FEATURES).read_bytes())
    data[-3] ^= 0xFF
    (tmp_path / "s" / FEATURES).write_bytes(bytes(data))
    with pytest.raises(InputError, match="does not match its manifest"):
        FeatureStore(tmp_path / "s")
    (tmp_path / "s" / FEATURES).write_bytes(bytes(data[:-40]))
    with pytest.raises(InputError, match="truncated"):
        FeatureStore(tmp_path / "s")
    with pytest.raises(RuntimeError):
        with FeatureStoreWriter(tmp_path / "u", 20, 4, "k1") as writer:
            writer.append(x[:10])
            raise RuntimeError("killed half-way")
    assert not (tmp_path / "u" / MANIFEST).exists() and not list((tmp_path / "u").glob("*.partial"))
    with pytest.raises(InputError, match="No complete feature store"):
        FeatureStore(tmp_path / "u")
    with FeatureStoreWriter(tmp_path / "v", 20, 4, "k1") as writer, pytest.raises(ValueError, match="10 of 20"):
        writer.append(x[:10])
        writer.close()


def test_the_streamed_head_equals_the_in_memory_head(tmp_path):
    x, y = _blobs(900, 24, 4)
    store = _write(tmp_path / "s", x, chunk=100)
    rows = np.arange(0, 900, 2)  # a subset of the rows, as the check head trains on
    weight = class_balanced_weights(y[rows], 4)
    want = fit_softmax_regression(x[rows], y[rows], 4, 0.1, weight, label_smoothing=0.1)
    got = fit_streamed(StreamedFeatures(store, rows), y[rows], 4, 0.1, weight, label_smoothing=0.1)
    assert np.abs(got.kernel - want.kernel).max() <= 1e-4 and np.abs(got.bias - want.bias).max() <= 1e-4
    assert np.allclose(predict_streamed(got, store, rows), want.predict_proba(x[rows]), atol=1e-5)
    folds = stratified_folds(y[rows], 3, seed=1)
    chosen, memory = choose_streamed(store, rows, y[rows], 4, folds), choose_and_fit(x[rows], y[rows], 4, folds)
    assert chosen.l2 == memory.l2 and chosen.cv.keys() == memory.cv.keys()
    assert all(abs(chosen.cv[k]["loss"] - memory.cv[k]["loss"]) < 1e-4 for k in memory.cv)
    assert np.abs(chosen.kernel - memory.kernel).max() <= 1e-4


def test_the_streamed_head_breaks_when_a_chunk_is_skipped(tmp_path):
    """The equality above is not vacuous: a store read that drops a chunk gives another head."""
    x, y = _blobs(900, 24, 4)
    store = _write(tmp_path / "s", x, chunk=100)
    rows = np.arange(900)
    want = fit_softmax_regression(x, y, 4, 0.1)
    data = StreamedFeatures(store, rows, chunk_rows=128)
    full = data.chunks
    data.chunks = lambda block=slice(None): (item for i, item in enumerate(full(block)) if i != 0)
    got = fit_streamed(data, y, 4, 0.1)
    assert np.abs(got.kernel - want.kernel).max() > 1e-3


@pytest.fixture(scope="module")
def emoji_60(tmp_path_factory):
    from fixtures.emoji_dataset import build_emoji_dataset

    folder = tmp_path_factory.mktemp("emoji60")
    build_emoji_dataset(folder, per_class=12)
    return folder


def test_retrain_past_kfold_max_images_streams_features_and_matches_the_in_memory_head(tiny_converted, emoji_60, tmp_path):
    """Real images through the tiny CNN: the streamed phase 1 gives the in-memory phase's heads and accuracy."""
    from retrain import TrainConfig, retrain
    from retrain.api import _backbone
    from retrain.data import scan_folder
    from retrain.evaluation import plan_evaluation
    from retrain.feature_store import extract_to_store
    from retrain.features import FeatureExtractor, cached_features
    from retrain.streamed_phase import StoreRows, frozen_head_phase

    config, messages = TrainConfig(kfold_max_images=40), []
    result = retrain(tiny_converted.model.directory, emoji_60, tmp_path / "out", config, cache_dir=tmp_path / "cache",
                     progress=False, verify=False, log=messages.append)
    report = result.report
    assert report["evaluation"]["kind"] == "test split" and report["dataset"]["split"]["check"] == 10
    assert any("features streamed from disk" in m for m in messages), messages
    assert "baseline_raw_pixels_sample" not in report  # 50 + 10 images: no sample needed
    assert not list((tmp_path / "cache").glob(".feature-store*"))  # the run's store is gone

    fx = FeatureExtractor(_backbone(tiny_converted.model.directory, None, log=lambda m: None))
    items = scan_folder(emoji_60).items
    paths, y = [p for p, _ in items], np.array([label for _, label in items])
    x, ok, _ = cached_features(fx, paths, tmp_path / "cache")
    store, _ = extract_to_store(fx, paths, tmp_path / "cache", tmp_path / "store")
    assert ok.all() and np.array_equal(store.take(np.arange(len(paths))), x)
    plan = plan_evaluation(y, config)
    labels = report["dataset"]["labels"]
    memory = frozen_head_phase(x, y, labels, plan, config, log=lambda m: None)
    streamed = frozen_head_phase(StoreRows(store, np.arange(len(y))), y, labels, plan, config, log=lambda m: None)
    assert streamed["held"]["accuracy"] == memory["held"]["accuracy"] == report["test_frozen_features"]["accuracy"]
    for head in ("check_head", "delivered_head"):
        assert streamed[head].l2 == memory[head].l2
        assert np.abs(streamed[head].kernel - memory[head].kernel).max() <= 1e-4
