"""The install contract: the stack imports together, the CLI is light, TF.js runs in Node."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, run_cli


def test_the_whole_stack_imports_together():
    code = "import tensorflowjs.converters.tf_saved_model_conversion_v2, onnx2tf, onnxruntime, torch, onnxsim; print('ok')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")


def test_cli_help_loads_no_framework():
    code = (
        "import sys\n"
        "from transferjs import cli\n"
        "from transferjs.options import build_parser\n"
        "build_parser().format_help()\n"
        "heavy = [m for m in ('tensorflow', 'torch', 'onnx2tf', 'onnx', 'tensorflowjs') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("command", [None, "convert", "export", "verify"])
def test_help_shows_usage_with_an_example(command):
    proc = run_cli(*([command] if command else []), "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: transferjs")
    assert "example" in proc.stdout and "transferjs " + (command or "convert") in proc.stdout


def test_no_command_prints_help_and_fails():
    proc = run_cli()
    assert proc.returncode == 2
    assert "usage: transferjs" in proc.stdout


def _tiny_saved_model(path):
    import tensorflow as tf

    class Affine(tf.Module):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.w = tf.Variable(rng.standard_normal((6, 4)).astype("float32"))
            self.b = tf.Variable(rng.standard_normal(4).astype("float32"))

        @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32, name="x")])
        def __call__(self, x):
            return {"y": tf.nn.softmax(tf.matmul(x, self.w) + self.b)}

    m = Affine()
    tf.saved_model.save(m, str(path), signatures=m.__call__)
    return m


def test_node_harness_runs_a_graph_model_like_tensorflow(tmp_path):
    from converter.export.tfjs import saved_model_to_graph_model
    from converter.runtimes.tfjs_node import run_bundle

    module = _tiny_saved_model(tmp_path / "sm")
    saved_model_to_graph_model(tmp_path / "sm", tmp_path / "tfjs")
    x = np.random.default_rng(1).standard_normal((3, 6)).astype("float32")
    expected = module(x)["y"].numpy()
    for backend in ("wasm", "cpu"):
        run = run_bundle(tmp_path / "tfjs", [{"x": x}], backend=backend)
        assert run.backend == backend and run.kind == "graph"
        got = run.samples[0]["y"]
        assert got.shape == (3, 4)
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_onnx2tf_converts_an_image_model_without_network(tiny_onnx, tmp_path, monkeypatch):
    """A static batch-1 RGB input is what makes onnx2tf fetch its calibration file."""
    import onnx

    import onnxruntime

    from converter.runtimes.tensorflow import run_saved_model
    from converter.sources.onnx import fold_constants, onnx2tf_saved_model, read_onnx, set_input_shapes

    # Any HTTP(S) request from the child process now fails at once.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    model = set_input_shapes(read_onnx(tiny_onnx), {"image": [1, 3, 32, 32]}, "static")
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    saved = onnx2tf_saved_model(fold_constants(model), tmp_path / "work")
    # The conversion that had no network is the real one: the SavedModel computes what onnxruntime does.
    x = np.random.default_rng(3).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
    (expected,) = onnxruntime.InferenceSession(str(tiny_onnx)).run(None, {"image": x})
    (got,) = run_saved_model(saved, [{"image": x.transpose(0, 2, 3, 1)}])[0].values()
    np.testing.assert_allclose(got, expected, atol=1e-5)
