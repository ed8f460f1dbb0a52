"""Shared fixtures: the CLI runner and converted models reused across tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# As the CLI does (converter.logs.configure): before any test imports TensorFlow.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

ROOT = Path(__file__).resolve().parents[1]
TRANSFERJS = [sys.executable, "-m", "transferjs.cli"]


# `make test` runs two xdist workers with --dist loadgroup: each test module stays on one worker (its
# module fixtures are built once, its tests keep their order), and every test that uses the
# session's real EfficientNet-Lite0 shares one worker, so that conversion is made once.
SHARED_HEAVY_FIXTURES = {"effnet", "emoji_retrained"}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the group marks into node ids
def pytest_collection_modifyitems(config, items):
    for item in items:
        heavy = SHARED_HEAVY_FIXTURES & set(getattr(item, "fixturenames", ()))
        item.add_marker(pytest.mark.xdist_group("effnet" if heavy else item.module.__name__))


def run_cli(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    """Run ``transferjs ARGS`` in a child process, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(TRANSFERJS + [str(a) for a in args], cwd=cwd or ROOT, env=full_env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """The tiny CNN fixture exported to ONNX with a dynamic batch."""
    import torch

    from fixtures.models import tiny_cnn

    model, example = tiny_cnn()
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    torch.onnx.export(model, example, str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    return path


@pytest.fixture(scope="session")
def tiny_converted(tiny_onnx, tmp_path_factory):
    """``transferjs convert`` of the tiny CNN through the Python API (reused, read-only)."""
    from converter import convert

    out = tmp_path_factory.mktemp("converted") / "tiny"
    return convert(tiny_onnx, out)


ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def effnet(tmp_path_factory):
    """The real ImageNet EfficientNet-Lite0 converted from PyTorch by the demo's path (once per run)."""
    from transferjs.demo import run

    return run(tmp_path_factory.mktemp("effnet") / "efficientnet-lite0")


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> dict:
    """scikit-image's bundled photos written as PNG and JPEG files."""
    import skimage.data
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    files = {}
    for name in ("chelsea", "coffee"):
        img = Image.fromarray(getattr(skimage.data, name)())
        img.save(folder / f"{name}.png")
        img.save(folder / f"{name}.jpg", quality=92)
        files[name] = (folder / f"{name}.png", folder / f"{name}.jpg")
    return files


# One retraining run's settings, shared by the fixture and the tests that repeat it (resume).
RETRAIN_ARGS = ("--fine-tune", "2", "--fine-tune-epochs", "2", "--no-progress")


@pytest.fixture(scope="session")
def emoji_small(tmp_path_factory) -> Path:
    """30 emoji per category (150 images) as class folders, plus a corrupt PNG and a text file."""
    from fixtures.emoji_dataset import build_emoji_dataset

    folder = tmp_path_factory.mktemp("emoji")
    build_emoji_dataset(folder, per_class=30)
    (folder / "objects" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "objects" / "README.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="session")
def emoji_retrained(effnet, emoji_small, tmp_path_factory) -> dict:
    """``transferjs retrain`` (head, then a short fine-tune) of EfficientNet-Lite0 on ``emoji_small`` (read-only)."""
    root = tmp_path_factory.mktemp("retrained")
    out, cache = root / "emoji", root / "cache"
    proc = run_cli("retrain", effnet["result"].model.directory, "--data", emoji_small, "-o", out, "--cache-dir", cache,
                   *RETRAIN_ARGS)
    assert proc.returncode == 0, proc.stderr
    return {"out": out, "cache": cache, "proc": proc, "model_dir": effnet["result"].model.directory, "data": emoji_small}
