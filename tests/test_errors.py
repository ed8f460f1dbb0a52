"""Bad input: a clear error naming the file, a non-zero exit, no traceback, nothing written."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import ROOT, run_cli


def _assert_clean_failure(proc, code: int, *needles: str):
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def test_empty_file(tmp_path):
    f = tmp_path / "model.onnx"
    f.write_bytes(b"")
    proc = run_cli("convert", f, "-o", tmp_path / "out")
    _assert_clean_failure(proc, 2, str(f), "empty file")
    assert not (tmp_path / "out").exists()


def test_truncated_onnx(tiny_onnx, tmp_path):
    f = tmp_path / "cut.onnx"
    f.write_bytes(tiny_onnx.read_bytes()[: tiny_onnx.stat().st_size // 2])
    proc = run_cli("convert", f, "-o", tmp_path / "out")
    _assert_clean_failure(proc, 2, str(f), "ONNX")


def test_wrong_format_shows_the_first_bytes(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"\x00\x00\x80\x3f" * 16)
    proc = run_cli("convert", f, "-o", tmp_path / "out")
    _assert_clean_failure(proc, 2, "Expected an ONNX, Keras or PyTorch model file", "weights.bin", "00 00 80 3f")


def test_missing_file(tmp_path):
    proc = run_cli("convert", tmp_path / "nope.onnx", "-o", tmp_path / "out")
    _assert_clean_failure(proc, 2, "nope.onnx", "not found")


def test_existing_output_is_not_overwritten(tiny_onnx, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = run_cli("convert", tiny_onnx, "-o", out)
    _assert_clean_failure(proc, 2, "already exists", "--overwrite")
    assert (out / "keep.txt").read_text() == "mine"


def test_parity_failure_lists_outputs_locates_the_divergence_and_writes_nothing(tiny_onnx, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("convert", tiny_onnx, "-o", out, "--atol", "0", "--rtol", "0")
    # With zero tolerance the first op that rounds differently is the first convolution.
    _assert_clean_failure(proc, 4, "tensorflow differs from onnxruntime", "tfjs-wasm differs from onnxruntime",
                          "logits: max abs", "divergence starts at node '/features/features.0/Conv' (Conv)")
    assert not out.exists()
    assert not list(tmp_path.glob(".out.*")), "temporary output left behind"


def test_failed_overwrite_keeps_the_old_output(tiny_onnx, tmp_path):
    import numpy as np

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    np.savez(tmp_path / "bad.npz", image=np.zeros((1, 3, 8, 8), np.float32))  # wrong size, found after converting
    proc = run_cli("convert", tiny_onnx, "-o", out, "--overwrite", "--sample", tmp_path / "bad.npz")
    _assert_clean_failure(proc, 2, "bad.npz", "expected shape [None, 3, 32, 32], received [1, 3, 8, 8]")
    assert (out / "keep.txt").read_text() == "old"
    assert not list(tmp_path.glob(".out.*"))


def _onnx_with_ops(path, ops):
    import onnx
    from onnx import TensorProto, helper

    nodes, prev = [], "x"
    for i, (domain, op) in enumerate(ops):
        nodes.append(helper.make_node(op, [prev], [f"t{i}"], name=f"node_{i}_{op}", domain=domain))
        prev = f"t{i}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 4])])
    opsets = [helper.make_opsetid("", 17)] + [helper.make_opsetid(d, 1) for d in {d for d, _ in ops if d}]
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))


def test_unsupported_ops_are_listed_all_at_once(tmp_path):
    f = tmp_path / "custom.onnx"
    _onnx_with_ops(f, [("", "Relu"), ("com.example", "Frobnicate"), ("", "Relu"), ("com.example", "Frobnicate"), ("com.example", "Twiddle")])
    proc = run_cli("convert", f, "-o", tmp_path / "out")
    _assert_clean_failure(proc, 3, "2 op type(s) not supported", "com.example.Frobnicate: 2 node(s): node_1_Frobnicate, node_3_Frobnicate",
                          "com.example.Twiddle: 1 node(s): node_4_Twiddle")


def test_external_data_outside_the_model_folder_is_refused(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "m.onnx"), save_as_external_data=True, location="secret.bin", size_threshold=0)
    # onnx itself refuses to write '..'; a hostile file is written by hand.
    hostile = onnx.load(str(tmp_path / "m.onnx"), load_external_data=False)
    for entry in hostile.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../secret.bin"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.onnx").write_bytes(hostile.SerializeToString())
    proc = run_cli("convert", tmp_path / "models" / "m.onnx", "-o", tmp_path / "out")
    _assert_clean_failure(proc, 2, "External data", "../secret.bin", "outside the model's folder")


def test_untrusted_pickle_is_refused_until_trusted(tmp_path):
    import torch

    from fixtures.models import tiny_cnn

    model, _ = tiny_cnn()
    f = tmp_path / "full_model.pt"
    torch.save(model, str(f))  # a whole pickled nn.Module: loading it imports and runs code
    proc = run_cli("convert", f, "-o", tmp_path / "out", "--input-shape", "image:1,3,32,32")
    _assert_clean_failure(proc, 2, "--trust-code", "run any code")
    assert not (tmp_path / "out").exists()
    proc = run_cli("convert", f, "-o", tmp_path / "out", "--input-shape", "image:1,3,32,32", "--trust-code")
    assert proc.returncode == 0, proc.stderr


def test_state_dict_without_factory_says_what_is_needed(tmp_path):
    import torch

    from fixtures.models import tiny_cnn

    f = tmp_path / "weights.pth"
    torch.save(tiny_cnn()[0].state_dict(), str(f))
    proc = run_cli("convert", f, "-o", tmp_path / "out", "--input-shape", "image:1,3,32,32")
    _assert_clean_failure(proc, 2, "state dict", "--model-factory")
    proc = run_cli("convert", f, "-o", tmp_path / "out", "--input-shape", "image:1,3,32,32",
                   "--model-factory", "fixtures.models:TinyCNN", "--model-kwargs", '{"classes": 4}')
    _assert_clean_failure(proc, 2, "do not fit fixtures.models:TinyCNN")
    proc = run_cli("convert", f, "-o", tmp_path / "out", "--input-shape", "image:1,3,32,32",
                   "--model-factory", "fixtures.models:TinyCNN")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("bad", ["image", "image:1,x,3", ":1,2"])
def test_malformed_input_shape(tiny_onnx, tmp_path, bad):
    proc = run_cli("convert", tiny_onnx, "-o", tmp_path / "out", "--input-shape", bad)
    assert proc.returncode == 2 and "NAME:D0,D1" in proc.stderr


def test_a_pass_that_breaks_on_an_odd_graph_is_named_not_a_traceback(tmp_path):
    """A TF.js pass meeting a node it cannot read (no ``op``) stops with its name and leaves model.json as it was."""
    import json

    from converter.errors import ConversionError
    from converter.export.tfjs_passes import apply_passes

    model_json = tmp_path / "model.json"
    text = json.dumps({"format": "graph-model", "modelTopology": {"node": [{"name": "x", "input": ["y"]}]}, "weightsManifest": []})
    model_json.write_text(text)
    with pytest.raises(ConversionError) as err:
        apply_passes(model_json)
    assert err.value.stage == "passes"
    assert str(err.value).startswith("The TF.js pass ") and " failed: KeyError" in str(err.value), str(err.value)
    assert model_json.read_text() == text


def test_convert_with_a_bad_calibration_images_path_fails_before_converting(tiny_onnx, tmp_path):
    # Checked before the conversion: later, this model (no known preprocessing) would fail for another reason.
    proc = run_cli("convert", tiny_onnx, "-o", tmp_path / "out", "--quantize", "uint8", "--calibration-images", tmp_path / "nope")
    _assert_clean_failure(proc, 2, str(tmp_path / "nope"), "does not exist")
    assert not (tmp_path / "out").exists()


def test_export_calibration_images_need_a_model_with_known_preprocessing(tiny_converted, tmp_path):
    (tmp_path / "images").mkdir()
    shutil.copyfile(ROOT / "js" / "node_modules" / "emoji-datasource-google" / "img" / "google" / "64" / "1f600.png",
                    tmp_path / "images" / "smile.png")
    proc = run_cli("export", tiny_converted.model.directory, "-o", tmp_path / "out", "--quantize", "uint8",
                   "--calibration-images", tmp_path / "images")
    _assert_clean_failure(proc, 2, "--calibration-images needs a model with one float image input of known size",
                          "preprocessing None", "--image-size")
    assert not (tmp_path / "out").exists()
