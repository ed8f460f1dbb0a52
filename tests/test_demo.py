"""The README's main job (make demo) runs end to end on a slice of the built-in data."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_demo_runs_the_main_job(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "transferjs.demo", "--out", str(tmp_path), "--per-class", "24"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for step in ("1. Converting", "2. Real images", "3. Retraining", "4. The exported bundle", "Summary"):
        assert step in out
    assert "tfjs-wasm: 285" in out
    report = json.loads((tmp_path / "classifier" / "report.json").read_text())
    assert report["dataset"]["counts"] == {c: 24 for c in ("activities", "animals-nature", "food-drink", "objects", "travel-places")}
    assert report["test"]["accuracy"] > 0.4  # chance is 0.2
    assert report["fine_tune"]["layers"] == 16 and "fine-tuned (16 layers)" in out
    assert (tmp_path / "classifier" / "tfjs-transfer" / "head" / "model.json").is_file()
    assert (tmp_path / "classifier-uint8" / "model.json").is_file()
    # uint8 calibrated on the retrain images (64 of the 120), not the photo crops.
    calibration = json.loads((tmp_path / "classifier-uint8" / "metadata.json").read_text())["quantization"]["calibration"]
    assert calibration["source"] == "user images" and calibration["images"] == 64 and calibration["found"] == 120
    assert "calibrated on 64 training images" in out
    assert out.count(" true ") >= 5  # held-out images predicted by the bundle in Node.js
