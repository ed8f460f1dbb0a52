"""Transfer learning in JavaScript: the exported ``tfjs-transfer/retrain_head.mjs`` teaches the head a new class in Node.js."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from converter.runtimes.node import js_dir, node_executable
from fixtures.emoji_dataset import build_emoji_dataset, class_name

NEW_CATEGORY = "Flags"  # not among the five classes the head was trained on
NEW_TRAIN, NEW_HELD_OUT = 14, 10
OLD_TRAIN, OLD_HELD_OUT = 4, 6  # per old class; held-out images are ones the Python retrain never saw


def run_retrain_head(transfer_dir, *args) -> dict:
    """``node tfjs-transfer/retrain_head.mjs ARGS --json`` as a user would run it; its JSON report."""
    env = {**os.environ, "NODE_PATH": str(js_dir() / "node_modules")}
    cmd = [node_executable(), str(transfer_dir / "retrain_head.mjs"), *map(str, args), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def new_class_examples(emoji_retrained, tmp_path_factory) -> dict:
    """Training folder (new class + a few of each old class + the corrupt PNG) and held-out images per class."""
    root = tmp_path_factory.mktemp("transfer-data")
    new = class_name(NEW_CATEGORY)
    build_emoji_dataset(root / "raw-new", per_class=2 * max(NEW_TRAIN, NEW_HELD_OUT), categories=(NEW_CATEGORY,))
    build_emoji_dataset(root / "raw-old", per_class=30 + OLD_HELD_OUT)
    train, held_out = root / "train", {}
    # Interleaved, so that training and held-out flags come from the same part of the alphabet.
    flags = sorted((root / "raw-new" / new).iterdir())
    (train / new).mkdir(parents=True)
    for f in flags[0::2][:NEW_TRAIN]:
        shutil.copy(f, train / new / f.name)
    held_out[new] = [f for f in flags if not (train / new / f.name).exists()][:NEW_HELD_OUT]
    for folder in sorted(p for p in emoji_retrained["data"].iterdir() if p.is_dir()):
        seen = {f.name for f in folder.iterdir()}
        (train / folder.name).mkdir()
        for f in sorted(f for f in folder.glob("*.png") if f.name != "corrupt.png")[:OLD_TRAIN]:
            shutil.copy(f, train / folder.name / f.name)
        held_out[folder.name] = [f for f in sorted((root / "raw-old" / folder.name).iterdir()) if f.name not in seen]
    shutil.copy(emoji_retrained["data"] / "objects" / "corrupt.png", train / "objects" / "corrupt.png")
    return {"train": train, "held_out": held_out, "new": new}


@pytest.fixture(scope="module")
def retrained_in_node(emoji_retrained, new_class_examples, tmp_path_factory) -> dict:
    """One run of retrain_head.mjs: fit on the training folder, save, classify the held-out images."""
    transfer = emoji_retrained["out"] / "tfjs-transfer"
    head = tmp_path_factory.mktemp("head") / "head-retrained"
    images = [f for files in new_class_examples["held_out"].values() for f in files]
    start = time.monotonic()
    report = run_retrain_head(transfer, "--data", new_class_examples["train"], "--out", head, "--classify", *images)
    return {"transfer": transfer, "head": head, "images": images, "report": report, "seconds": time.monotonic() - start}


def accuracy(results, labels) -> dict[str, float]:
    """Top-1 accuracy per true class (the image's folder name)."""
    hits: dict[str, list[bool]] = {}
    for r in results:
        truth = os.path.basename(os.path.dirname(r["image"]))
        hits.setdefault(truth, []).append(r["top"][0]["label"] == truth)
    assert set(hits) <= set(labels)
    return {label: sum(h) / len(h) for label, h in hits.items()}


def test_transfer_folder_ships_the_example(emoji_retrained):
    transfer = emoji_retrained["out"] / "tfjs-transfer"
    for name in ("backbone/model.json", "backbone/decode.mjs", "head/model.json", "labels.json", "retrain_head.mjs",
                 "runtime.mjs", "preprocess.mjs", "decode.mjs", "package.json", "README.md"):
        assert (transfer / name).is_file(), name
    labels = json.loads((transfer / "labels.json").read_text())
    assert labels == sorted(p.name for p in emoji_retrained["data"].iterdir() if p.is_dir())
    package = json.loads((transfer / "package.json").read_text())
    assert {"@tensorflow/tfjs", "@tensorflow/tfjs-backend-wasm", "pngjs", "jpeg-js"} <= set(package["dependencies"])
    assert "node retrain_head.mjs --data" in (transfer / "README.md").read_text()


@pytest.mark.slow
def test_head_retrained_in_node_learns_a_new_class(retrained_in_node, new_class_examples):
    report, new = retrained_in_node["report"], new_class_examples["new"]
    old_labels = json.loads((retrained_in_node["transfer"] / "labels.json").read_text())
    assert report["labels"] == [*old_labels, new]
    assert report["retrain"]["newClasses"] == [new]
    assert report["retrain"]["examples"] == {**{label: OLD_TRAIN for label in old_labels}, new: NEW_TRAIN}
    assert [os.path.basename(s["file"]) for s in report["retrain"]["skipped"]] == ["corrupt.png"]
    per_class = accuracy(report["results"], report["labels"])
    old = sum(per_class[label] for label in old_labels) / len(old_labels)
    print(f"\nnew class {per_class[new]:.0%}, old classes {old:.0%} ({per_class}), {retrained_in_node['seconds']:.1f} s")
    # Measured: new class 100 %, old classes 40-50 % (the original head: 50 % on the same images; chance 1/6).
    assert per_class[new] >= 0.8
    assert old >= 2 / len(report["labels"])
    for name in ("model.json", "weights.bin", "labels.json"):
        assert (retrained_in_node["head"] / name).is_file(), name


@pytest.mark.slow
def test_retrained_head_loads_again_and_gives_the_same_answers(retrained_in_node):
    again = run_retrain_head(retrained_in_node["transfer"], "--head", retrained_in_node["head"],
                             "--classify", *retrained_in_node["images"])
    assert again["retrain"] is None and again["labels"] == retrained_in_node["report"]["labels"]
    for first, second in zip(retrained_in_node["report"]["results"], again["results"], strict=True):
        assert first["image"] == second["image"]
        assert [t["label"] for t in first["top"]] == [t["label"] for t in second["top"]]
        assert [t["probability"] for t in first["top"]] == pytest.approx([t["probability"] for t in second["top"]], abs=1e-5)
