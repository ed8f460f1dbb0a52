"""The Python API as a user calls it: a fresh interpreter, no environment prepared, no side effects.

TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` once at start-up; with oneDNN on (the caller's
choice, or the default on CPUs with AVX512-VNNI/AMX), grappler fuses hard-swish into
``_FusedHardSwish``, which no TF.js backend runs. The API must still give a bundle that runs
in TF.js, and must leave the caller's process as it found it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, logging, os, sys, warnings
# The frameworks set variables and warning filters of their own when imported (TF2_BEHAVIOR,
# KMP_*, numpy/torch filters...): import them first, so what is compared is transferjs' doing.
import keras, onnx, onnxruntime, sympy, tensorflow, tensorflowjs, torch, torch.onnx
before = {"env": dict(os.environ), "stdout": sys.stdout, "stderr": sys.stderr,
          "filters": list(warnings.filters), "root_level": logging.getLogger().level,
          "disabled": logging.root.manager.disable}
import converter
from fixtures.failure_classes import class3_hardswish
module, example, _ = class3_hardswish()
result = converter.convert(module, sys.argv[1], example_inputs=example)
from tensorflow.python.util import _pywrap_util_port
after = {"env": dict(os.environ), "stdout": sys.stdout, "stderr": sys.stderr,
         "filters": list(warnings.filters), "root_level": logging.getLogger().level,
         "disabled": logging.root.manager.disable}
changed = [k for k in before if before[k] != after[k]]
env_changed = sorted(set(before["env"].items()) ^ set(after["env"].items()))
print(json.dumps({"parity": result.report["parity"]["tfjs"]["ok"], "max_abs": result.report["parity"]["tfjs"]["outputs"],
                  "onednn": bool(_pywrap_util_port.IsMklEnabled()), "changed": changed, "env_changed": env_changed,
                  "ops": result.report["tfjs"]["op_histogram"]}))
"""


@pytest.mark.parametrize("onednn", ["unset", "1"])
def test_api_in_a_fresh_interpreter_gives_a_hardswish_bundle_that_runs_in_tfjs(tmp_path, onednn):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_ENABLE_ONEDNN_OPTS", "TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")}
    if onednn != "unset":
        env["TF_ENABLE_ONEDNN_OPTS"] = onednn
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "out")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if onednn == "1":
        assert result["onednn"], "the environment asked for oneDNN and TensorFlow did not start with it"
    assert result["parity"], result["max_abs"]
    assert not any("HardSwish" in op or op.startswith("_Mkl") for op in result["ops"]), result["ops"]
    assert result["changed"] == [] and result["env_changed"] == [], result
