"""``convert`` end to end: real torch / onnxruntime, onnx2tf, TensorFlow and TF.js (Node, wasm)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_cli


def test_onnx_conversion_writes_a_verified_savedmodel_and_bundle(tiny_converted, tiny_onnx):
    out = tiny_converted.model.directory
    assert (out / "saved_model" / "saved_model.pb").is_file()
    assert (out / "tfjs" / "model.json").is_file()
    assert not list(out.glob("saved_model/*.tflite"))
    report = json.loads((out / "report.json").read_text())
    assert report["source"]["format"] == "onnx" and len(report["source"]["sha256"]) == 64
    assert report["source"]["opset"] == 17
    assert {"tensorflow", "onnx", "onnx2tf", "tensorflowjs"} <= set(report["versions"])
    for stage in ("tensorflow", "tfjs"):
        parity = report["parity"][stage]
        assert parity["reference"] == "onnxruntime" and parity["ok"] and parity["samples"] == 3
        assert parity["outputs"]["logits"]["max_abs"] < 1e-4
        assert parity["outputs"]["logits"]["top1_agreement"] == 1.0
    assert report["parity"]["tfjs"]["candidate"] == "tfjs-wasm"
    (image,) = report["model"]["inputs"]
    assert image == {"name": "image", "shape": [None, 32, 32, 3], "dtype": "float32", "layout": "NHWC",
                     "source_name": "image", "source_layout": "NCHW", "value_range": None, "meaning": None,
                     "dim_names": ["batch", None, None, None]}  # the ONNX dim_param of the dynamic batch
    assert report["model"]["outputs"][0]["name"] == "logits"
    assert report["op_histogram"]["Conv2D"] == 2
    # Flatten after global pooling became a Squeeze: no layout Transpose left in the graph.
    assert report["source"]["onnx_passes"]["squeeze_pooled_flatten"] == 1
    assert "Transpose" not in report["op_histogram"] and "Transpose" not in report["tfjs"]["op_histogram"]
    assert set(report["seconds"]) >= {"load_source", "to_saved_model", "parity_tensorflow", "export_tfjs", "parity_tfjs"}


def test_converted_model_matches_onnxruntime_on_a_new_batch(tiny_converted, tiny_onnx):
    """Independent of the report: run both runtimes here, batch of 5 (the batch is dynamic)."""
    import onnxruntime as ort

    from converter.runtimes.tensorflow import run_saved_model

    x = np.random.default_rng(7).uniform(-1, 1, (5, 3, 32, 32)).astype("float32")
    (expected,) = ort.InferenceSession(str(tiny_onnx)).run(None, {"image": x})
    got = run_saved_model(tiny_converted.model.saved_model, [{"image": x.transpose(0, 2, 3, 1)}])[0]["logits"]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_pytorch_module_with_two_inputs_and_two_outputs(tmp_path):
    from converter import convert
    from fixtures.models import two_in_two_out

    model, example = two_in_two_out()
    result = convert(model, tmp_path / "out", example_inputs=example, output_names=["logits", "embedding"])
    names = [t.name for t in result.model.inputs]
    assert names == ["image", "extra"]
    assert [t.layout for t in result.model.inputs] == ["NHWC", None]
    assert [t.name for t in result.model.outputs] == ["logits", "embedding"]
    for stage in ("tensorflow", "tfjs"):
        outs = result.report["parity"][stage]["outputs"]
        assert set(outs) == {"logits", "embedding"}
        assert all(o["within_tolerance"] for o in outs.values())
    assert result.report["parity"]["tfjs"]["reference"] == "torch"


def test_int64_token_ids_are_sampled_inside_the_vocabulary(tmp_path):
    from converter import convert
    from fixtures.models import token_classifier

    model, example = token_classifier()
    result = convert(model, tmp_path / "out", example_inputs=example)
    (ids,) = result.model.inputs
    assert ids.value_range == (0, 50)
    assert ids.dtype in ("int64", "int32") and ids.layout is None
    assert result.report["parity"]["tfjs"]["ok"], result.report["parity"]["tfjs"]
    # TF.js has no int64: the bundle's metadata says what the JavaScript caller passes.
    (meta_ids,) = json.loads((result.bundle / "metadata.json").read_text())["inputs"]
    assert meta_ids["dtype"] == "int32" and meta_ids["value_range"] == [0, 50]
    assert meta_ids.get("source_dtype", "int32") in ("int64", "int32")


def test_cli_convert_prints_a_summary_and_checks_the_users_sample(tiny_onnx, tmp_path):
    np.savez(tmp_path / "mine.npz", image=np.full((4, 3, 32, 32), 0.5, np.float32))
    proc = run_cli("convert", tiny_onnx, "-o", tmp_path / "out", "--sample", tmp_path / "mine.npz")
    assert proc.returncode == 0, proc.stderr
    assert "parity onnxruntime -> tfjs-wasm: logits" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "out" / "tfjs" / "model.json").is_file()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["parity"]["tfjs"]["samples"] == 4  # 3 random + the user's


def test_cli_export_quantized_bundle_runs_in_tfjs(tiny_converted, tmp_path):
    proc = run_cli("export", tiny_converted.model.directory, "-o", tmp_path / "b16", "--quantize", "float16")
    assert proc.returncode == 0, proc.stderr
    assert "parity tensorflow float32 -> tfjs-wasm: logits" in proc.stdout
    assert "weights float16 (0.50 x float32 weights)" in proc.stdout
    full = (tiny_converted.model.directory / "tfjs" / "group1-shard1of1.bin").stat().st_size
    half = (tmp_path / "b16" / "group1-shard1of1.bin").stat().st_size
    assert half < 0.6 * full


def test_cli_verify_reports_every_output(tiny_converted):
    proc = run_cli("verify", tiny_converted.model.directory)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] and report["candidate"] == "tfjs-wasm" and list(report["outputs"]) == ["logits"]


@pytest.mark.parametrize("kind", ["exported_program", "torchscript"])
def test_cli_converts_pytorch_files(tmp_path, kind):
    import torch

    from fixtures.models import tiny_cnn

    model, example = tiny_cnn()
    if kind == "exported_program":
        f = tmp_path / "tiny.pt2"
        batch = torch.export.Dim("batch", max=64)
        torch.export.save(torch.export.export(model, (torch.randn(2, 3, 32, 32),), dynamic_shapes=({0: batch},)), str(f))
        extra = []
    else:
        f = tmp_path / "tiny.pt"
        torch.jit.trace(model, example).save(str(f))
        extra = ["--input-shape", "image:1,3,32,32"]
    proc = run_cli("convert", f, "-o", tmp_path / "out", *extra)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["source"]["file_kind"] == kind
    assert report["model"]["inputs"][0]["shape"] == [None, 32, 32, 3]
    assert report["parity"]["tfjs"]["ok"] and report["parity"]["tfjs"]["reference"] == "torch"


def _constant_of_shape_model(path):
    """Conv weights computed at run time from ConstantOfShape, as old model-zoo files do."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("ConstantOfShape", ["w_shape"], ["ones"], value=numpy_helper.from_array(np.array([1.0], np.float32))),
        helper.make_node("Mul", ["ones", "w_scale"], ["w"]),
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([4, 3, 3, 3], np.int64), "w_shape"),
        numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w_scale"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
    ]
    graph = helper.make_graph(nodes, "cos", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def test_weights_from_constant_of_shape_with_batch_made_dynamic(tmp_path):
    _constant_of_shape_model(tmp_path / "cos.onnx")
    proc = run_cli("convert", tmp_path / "cos.onnx", "-o", tmp_path / "out", "--batch", "dynamic")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["model"]["inputs"][0]["shape"] == [None, 8, 8, 3]
    # A 4-D output switches to NHWC too, and the report says so.
    (y,) = report["model"]["outputs"]
    assert (y["shape"], y["layout"], y["source_layout"]) == ([None, 8, 8, 4], "NHWC", "NCHW")
    assert report["parity"]["tfjs"]["ok"] and report["parity"]["tensorflow"]["ok"]
    assert "ConstantOfShape" not in report["op_histogram"]


def test_format_is_detected_from_content_and_external_data_inside_the_folder_loads(tiny_onnx, tmp_path):
    import onnx

    model = onnx.load(str(tiny_onnx))
    (tmp_path / "m").mkdir()
    onnx.save(model, str(tmp_path / "m" / "weights.bin"), save_as_external_data=True, location="weights.data", size_threshold=0)
    assert (tmp_path / "m" / "weights.data").stat().st_size > 1000
    proc = run_cli("convert", tmp_path / "m" / "weights.bin", "-o", tmp_path / "out")  # an ONNX file named .bin
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["source"]["format"] == "onnx" and report["parity"]["tfjs"]["ok"]


def test_keep_layout_keeps_nchw(tiny_onnx, tmp_path):
    proc = run_cli("convert", tiny_onnx, "-o", tmp_path / "out", "--keep-layout")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    (image,) = report["model"]["inputs"]
    assert image["shape"] == [None, 3, 32, 32] and image["layout"] == "NCHW"
    assert report["parity"]["tfjs"]["ok"]
