"""``retrain --workers 2`` on loopback: the same head and fine-tuned model as one worker; a worker killed, then ``--resume``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, TRANSFERJS, run_cli

# Two outer folds keep the run short; the head's strength is still chosen by cross-validation (66 fits).
ARGS = ("--folds", "2", "--no-baseline", "--no-progress")
# Data-parallel fine-tuning: the last 2 weight layers, 2 epochs of 2 global batches each (L2 fixed: the head is not the point).
FINE_TUNE = ("--fine-tune", "2", "--fine-tune-epochs", "2", "--batch-size", "16", "--l2", "0.1")


@pytest.fixture(scope="module")
def emoji_60(tmp_path_factory) -> Path:
    from fixtures.emoji_dataset import build_emoji_dataset

    folder = tmp_path_factory.mktemp("emoji60")
    build_emoji_dataset(folder, per_class=12)
    return folder


@pytest.fixture(scope="module")
def one_worker(tiny_converted, emoji_60, tmp_path_factory) -> dict:
    """The reference: the same retrain as one worker (in this process, no cluster)."""
    from retrain import TrainConfig, retrain
    from retrain.distributed import SINGLE

    root = tmp_path_factory.mktemp("one-worker")
    result = retrain(tiny_converted.model.directory, emoji_60, root / "out", TrainConfig(folds=2), cache_dir=root / "cache",
                     baseline=False, verify=False, progress=False, log=lambda m: None, workers=SINGLE)
    return {"report": result.report, "weights": head_weights(root / "out")}


def head_weights(out: Path) -> dict:
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(out / "saved_model" / "variables" / "variables"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if "VARIABLE_VALUE" in k}


def assert_same_head(out: Path, reference: dict) -> None:
    got, report = head_weights(out), json.loads((out / "report.json").read_text())
    assert got.keys() == reference["weights"].keys() and len(got) == 2  # the dense head's kernel and bias
    assert max(float(np.abs(got[k] - reference["weights"][k]).max()) for k in got) <= 1e-4
    want = reference["report"]
    assert report["test"]["accuracy"] == want["test"]["accuracy"]
    assert report["head"]["l2"] == want["head"]["l2"] and report["head"]["cv"] == want["head"]["cv"]


@pytest.mark.slow
def test_two_workers_on_loopback_train_the_one_worker_head(tiny_converted, emoji_60, one_worker, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc = run_cli("retrain", tiny_converted.model.directory, "--data", emoji_60, "-o", out, "--cache-dir", cache,
                   "--workers", "2", *ARGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "report.json").read_text())["workers"] == 2
    assert_same_head(out, one_worker)
    assert len(_entries(cache)) == 60  # both shards reached the shared cache
    assert not list(cache.glob(".feature-store*")) and not list(tmp_path.glob(".*transferjs-run"))


def _worker_pid(launcher: int, rank: int) -> int | None:
    """The child of ``launcher`` whose TF_CONFIG names task ``rank``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rpartition(")")[2].split()[1]) != launcher:
                continue
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        config = next((e[len(b"TF_CONFIG="):] for e in environ if e.startswith(b"TF_CONFIG=")), None)
        if config and json.loads(config)["task"]["index"] == rank:
            return int(stat.parent.name)
    return None


@pytest.mark.slow
def test_a_worker_killed_mid_training_stops_the_run_and_resume_completes_it(tiny_converted, emoji_60, one_worker,
                                                                            tmp_path):
    """kill -9 of worker 1 while the head trains: exit 130, nothing written; --resume finishes with the same head."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["retrain", tiny_converted.model.directory, "--data", emoji_60, "-o", out, "--cache-dir", cache,
            "--workers", "2", *ARGS]
    proc = subprocess.Popen(TRANSFERJS + list(map(str, args)), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stamp = tmp_path / ".out.transferjs-run" / "fingerprint"  # written once the features are in: the head trains next
    deadline = time.monotonic() + 300
    while not stamp.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = _worker_pid(proc.pid, 1)
    assert proc.poll() is None and worker, "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
    os.kill(worker, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-3000:]
    assert "worker 1 of 2 was killed (signal 9)" in err.decode()
    assert not out.exists()  # the chief was stopped before writing anything
    cached = _entries(cache)
    assert len(cached) == 60 and list(cache.glob(".feature-store*"))  # the killed run's stores are left behind

    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _entries(cache) == cached  # every feature came from the cache
    assert not list(cache.glob(".feature-store*"))  # and the dead run's stores were removed
    assert_same_head(out, one_worker)


def _entries(cache: Path) -> list[Path]:
    """The feature cache's per-image entries (not the runs' temporary stores beside them)."""
    return sorted(p for p in cache.glob("*/*.npy") if not p.parent.name.startswith("."))


@pytest.fixture(scope="module")
def one_worker_tuned(tiny_converted, emoji_60, tmp_path_factory) -> dict:
    """The reference for fine-tuning: ``transferjs retrain --fine-tune`` as one process (no cluster)."""
    root = tmp_path_factory.mktemp("one-worker-tuned")
    proc = run_cli("retrain", tiny_converted.model.directory, "--data", emoji_60, "-o", root / "out",
                   "--cache-dir", root / "cache", *ARGS, *FINE_TUNE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"report": json.loads((root / "out" / "report.json").read_text()), "weights": head_weights(root / "out")}


def assert_same_fine_tuned_model(out: Path, reference: dict) -> None:
    """Every exported weight (the fine-tuned layers and the head) within 1e-4; the same curves and held-out accuracy."""
    got, report, want = head_weights(out), json.loads((out / "report.json").read_text()), reference["report"]
    assert report["fine_tune"]["kept"] == want["fine_tune"]["kept"]
    assert got.keys() == reference["weights"].keys() and len(got) == (6 if want["fine_tune"]["kept"] else 2)
    diff = max(float(np.abs(got[k] - reference["weights"][k]).max()) for k in got)
    assert diff <= 1e-4, f"max weight difference {diff}"
    for history in ("history", "refit_history"):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert report["fine_tune"].get(history, {}).get(key) == pytest.approx(
                want["fine_tune"].get(history, {}).get(key), rel=1e-4, abs=1e-5), (history, key)
    assert report["fine_tune"]["test_accuracy"] == want["fine_tune"]["test_accuracy"]
    assert report["test"]["accuracy"] == want["test"]["accuracy"]


def _fine_tuned(model_dir, data: Path, out: Path, workers: int) -> dict:
    """``tests/finetune_worker.py`` as ``workers`` processes (1: plainly, no cluster); the chief's weights."""
    import sys

    from transferjs.workers import run_local_workers

    command = [sys.executable, str(ROOT / "tests" / "finetune_worker.py"), str(model_dir), str(data), str(out)]
    code = run_local_workers(command, workers) if workers > 1 else subprocess.run(command, cwd=ROOT).returncode
    assert code == 0
    with np.load(out) as saved:
        return {k: saved[k] for k in saved.files}


@pytest.mark.slow
def test_two_workers_fine_tune_the_same_weights_as_one(tiny_converted, emoji_60, tmp_path):
    """Every fine-tuned weight (2 graph layers and the head, 2 epochs of 4 global batches) within 1e-4."""
    one = _fine_tuned(tiny_converted.model.directory, emoji_60, tmp_path / "one.npz", 1)
    two = _fine_tuned(tiny_converted.model.directory, emoji_60, tmp_path / "two.npz", 2)
    assert one.keys() == two.keys() and len(one) == 7  # 2 layers' kernel and bias, the head's, the history
    diff = max(float(np.abs(one[k] - two[k]).max()) for k in one if k != "history")
    assert diff <= 1e-4, f"max weight difference {diff}"
    history = [json.loads(str(r["history"])) for r in (one, two)]
    assert history[0]["loss"][1] < history[0]["loss"][0]  # it trains
    assert history[1]["loss"] == pytest.approx(history[0]["loss"], rel=1e-5)


@pytest.mark.slow
def test_two_workers_fine_tune_the_one_worker_model(tiny_converted, emoji_60, one_worker_tuned, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("retrain", tiny_converted.model.directory, "--data", emoji_60, "-o", out, "--cache-dir",
                   tmp_path / "cache", "--workers", "2", *ARGS, *FINE_TUNE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["workers"] == 2 and report["fine_tune"]["history"]["all_reduce_bytes_per_step"] > 0
    assert_same_fine_tuned_model(out, one_worker_tuned)
    assert not list(tmp_path.glob(".*transferjs-run"))


@pytest.mark.slow
def test_a_worker_killed_mid_fine_tune_epoch_resumes_to_the_one_worker_model(tiny_converted, emoji_60, one_worker_tuned,
                                                                            tmp_path):
    """kill -9 of worker 1 in fine-tuning's second epoch: exit 130, nothing written; --resume continues from epoch 1."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["retrain", tiny_converted.model.directory, "--data", emoji_60, "-o", out, "--cache-dir", cache,
            "--workers", "2", *ARGS, *FINE_TUNE]
    proc = subprocess.Popen(TRANSFERJS + list(map(str, args)), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = tmp_path / ".out.transferjs-run" / "fine_tune.npz"  # the chief's, after fine-tuning's first epoch
    deadline, worker = time.monotonic() + 600, None
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        worker = worker or _worker_pid(proc.pid, 1)
        time.sleep(0.02)
    assert proc.poll() is None and worker, "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
    os.kill(worker, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-3000:]
    assert "worker 1 of 2 was killed (signal 9)" in err.decode()
    assert not out.exists()

    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "fine-tune: resumed after epoch 1" in resumed.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["fine_tune"]["history"]["resumed_from_epoch"] == 1
    assert_same_fine_tuned_model(out, one_worker_tuned)
