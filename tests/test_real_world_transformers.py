"""Real-world class 3 (issue 11): a BERT-style encoder saved as ``.pt2`` the way a user does, converted with no flags.

The model is built with torch in ``fixtures/real_world_onnx.py`` (2 layers, hidden 32, 4 heads, vocab 100), exported with
``torch.export`` and a dynamic sequence length, int64 token ids and an attention mask; the
bundle runs in TF.js (wasm, Node.js) at two sequence lengths and is compared with torch.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures.real_world_onnx import bert as _bert, bert_pt2, bert_tokens as _tokens
from tests.conftest import run_cli


def _tfjs_outputs(out, inputs: list[dict]) -> list[dict]:
    from converter.model import ConvertedModel
    from converter.runtimes.tfjs_node import run_bundle
    from converter.verify.parity import to_converted_inputs, to_source_outputs

    model = ConvertedModel.load(out)
    return model, to_source_outputs(model, run_bundle(out / "tfjs", to_converted_inputs(model, inputs)).samples)



def _assert_tfjs_matches_torch(program, samples, got):
    """Each TF.js output of each token sample has torch's shape and values (the exported program)."""
    import torch

    for sample, outputs in zip(samples, got):
        with torch.inference_mode():
            want = program.module()(*(torch.from_numpy(sample[k]) for k in ("input_ids", "attention_mask")))
        for name, expected in zip(("output_0", "output_1", "output_2"), want):
            assert outputs[name].shape == tuple(expected.shape), (name, outputs[name].shape, expected.shape)
            np.testing.assert_allclose(outputs[name], expected.numpy(), atol=1e-4, rtol=1e-3)


def test_class3_bert_pt2_keeps_a_dynamic_sequence_length_and_attention_layout_into_tfjs(tmp_path):
    program = bert_pt2(tmp_path / "bert.pt2")
    proc = run_cli("convert", tmp_path / "bert.pt2", "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["source"]["onnx_passes"]["expand_gelu"] == 2  # tf.nn.gelu's Erfc has no TF.js op
    assert "fixed_input_shapes" not in report["source"]
    bundle = json.loads((tmp_path / "out" / "tfjs" / "metadata.json").read_text())
    assert [(i["name"], i["shape"], i["dtype"], i["source_dtype"]) for i in bundle["inputs"]] == [
        ("input_ids", [2, None], "int32", "int64"), ("attention_mask", [2, None], "int32", "int64")]

    samples = [_tokens(2, 7, 1), _tokens(2, 23, 2)]  # neither is the exported length (16)
    model, got = _tfjs_outputs(tmp_path / "out", samples)
    assert [o.shape for o in model.outputs] == [[2, None, 32], [2, 32], [2, 4, None, None]]  # attention keeps its layout
    _assert_tfjs_matches_torch(program, samples, got)


def test_split_multi_axis_unsqueeze_gives_the_same_tensor_one_axis_at_a_time():
    """``mask[:, None, None, :]`` on ``[batch, seq]``: onnx2tf writes a reshape with two -1 for one Unsqueeze of two axes."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from converter.sources.onnx_transformer import split_multi_axis_unsqueeze

    graph = helper.make_graph([helper.make_node("Unsqueeze", ["mask", "axes"], ["m4"], name="mask/unsqueeze")], "g",
                              [helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "seq"])],
                              [helper.make_tensor_value_info("m4", TensorProto.FLOAT, ["batch", 1, 1, "seq"])],
                              initializer=[numpy_helper.from_array(np.array([1, -2], np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"mask": x})[0]  # noqa: E731
    want = run(model)
    assert split_multi_axis_unsqueeze(model) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["Unsqueeze", "Unsqueeze"]
    np.testing.assert_array_equal(run(model), want)
    assert want.shape == (3, 1, 1, 5)


def test_expand_gelu_matches_onnx_gelu_both_approximations():
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from converter.sources.onnx_transformer import expand_gelu

    x = np.linspace(-8, 8, 101, dtype=np.float32).reshape(1, 101)
    for approximate in ("none", "tanh"):
        graph = helper.make_graph([helper.make_node("Gelu", ["x"], ["y"], name="act", approximate=approximate)], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 101])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 101])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
        run = lambda m: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]  # noqa: E731
        want = run(model)
        assert expand_gelu(model) == 1 and "Gelu" not in [n.op_type for n in model.graph.node]
        np.testing.assert_allclose(run(model), want, atol=1e-6)


def test_class3_bert_via_onnx_export_keeps_a_dynamic_sequence_length_into_tfjs(tmp_path):
    """The same encoder through ``torch.onnx.export(dynamo=False)`` with a dynamic ``seq`` axis, against onnxruntime."""
    import onnxruntime as ort
    import torch

    example = _tokens(2, 16, 0)
    seq = {"input_ids": {1: "seq"}, "attention_mask": {1: "seq"}, "hidden": {1: "seq"}, "attention": {2: "seq", 3: "seq"}}
    torch.onnx.export(_bert(), tuple(torch.from_numpy(example[k]) for k in ("input_ids", "attention_mask")), str(tmp_path / "bert.onnx"),
                      input_names=["input_ids", "attention_mask"], output_names=["hidden", "pooled", "attention"],
                      dynamic_axes=seq, opset_version=17, dynamo=False)
    proc = run_cli("convert", tmp_path / "bert.onnx", "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    samples = [_tokens(2, 5, 3), _tokens(2, 30, 4)]
    model, got = _tfjs_outputs(tmp_path / "out", samples)
    assert model.outputs[2].shape == [2, 4, None, None]
    session = ort.InferenceSession(str(tmp_path / "bert.onnx"), providers=["CPUExecutionProvider"])
    for sample, outputs in zip(samples, got):
        for name, want in zip(("hidden", "pooled", "attention"), session.run(["hidden", "pooled", "attention"], sample)):
            assert outputs[name].shape == want.shape, (name, outputs[name].shape, want.shape)
            np.testing.assert_allclose(outputs[name], want, atol=1e-4, rtol=1e-3)


@pytest.fixture(scope="module")
def bert_dynamic_batch_pt2(tmp_path_factory):
    """The encoder as ``.pt2`` with ``torch.export`` Dims on the batch *and* the sequence."""
    path = tmp_path_factory.mktemp("bertdyn") / "bert.pt2"
    return path, bert_pt2(path, dynamic_batch=True)


def test_class3_bert_pt2_keeps_a_dynamic_batch_and_sequence_length_into_tfjs(tmp_path, bert_dynamic_batch_pt2):
    """Dims on batch and seq: the Linear layers stay 3-D and the attention Softmax keeps its axis.

    Before ``layer_norm_keeping_rank`` the TF parity run stopped (exit 1, MatMul "[2,512] vs
    [32,64]"); before ``unflatten_linear_layers`` the attention probs differed by 0.3.
    """
    path, program = bert_dynamic_batch_pt2
    proc = run_cli("convert", path, "-o", tmp_path / "out")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["source"]["onnx_passes"]["layer_norm_keeping_rank"] == 5
    assert report["source"]["onnx_passes"]["unflatten_linear_layers"] == 12  # 6 Linear per layer
    assert "fixed_input_shapes" not in report["source"]
    bundle = json.loads((tmp_path / "out" / "tfjs" / "metadata.json").read_text())
    assert [(i["name"], i["shape"], i["dtype"], i["source_dtype"]) for i in bundle["inputs"]] == [
        ("input_ids", [None, None], "int32", "int64"), ("attention_mask", [None, None], "int32", "int64")]

    samples = [_tokens(1, 9, 5), _tokens(3, 23, 6)]  # (batch, seq): neither is the exported (2, 16)
    model, got = _tfjs_outputs(tmp_path / "out", samples)
    assert [o.shape for o in model.outputs] == [[None, None, 32], [None, 32], [None, 4, None, None]]
    _assert_tfjs_matches_torch(program, samples, got)


def test_a_tensorflow_runtime_failure_in_the_parity_run_is_a_conversion_error_naming_the_op(tmp_path, bert_dynamic_batch_pt2):
    """Broken on purpose: without ``layer_norm_keeping_rank``, ``unflatten_linear_layers`` and
    ``static_reshape_targets`` (the graph onnx2tf got before this fix) its Flatten bakes [B, S*32] in.

    The SavedModel loads but TensorFlow rejects it on the first sample: exit 3 (the conversion
    cannot be done) with the stage, the TF op and its shapes, never exit 1 "unexpected".
    """
    path, _ = bert_dynamic_batch_pt2
    proc = run_cli("convert", path, "-o", tmp_path / "out", "--disable-pass", "layer_norm_keeping_rank",
                   "--disable-pass", "unflatten_linear_layers", "--disable-pass", "static_reshape_targets")
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "unexpected" not in proc.stderr
    assert "Stage parity_tensorflow" in proc.stderr and "TensorFlow cannot run the converted model on input_ids [" in proc.stderr
    assert "MatMul at node '" in proc.stderr and "Matrix size-incompatible" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_run_saved_model_turns_a_run_time_op_error_into_a_conversion_error(tmp_path):
    """A SavedModel that reshapes to a fixed batch of 2: a batch of 3 fails in TF at run time."""
    import tensorflow as tf

    from converter.errors import ConversionError
    from converter.runtimes.tensorflow import run_saved_model

    class Fixed(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x):
            return {"y": tf.reshape(x, [2, -1], name="bake_batch")}

    module = Fixed()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.serve})
    ok = run_saved_model(tmp_path / "sm", [{"x": np.ones((2, 3), np.float32)}])
    assert ok[0]["y"].shape == (2, 3)
    with pytest.raises(ConversionError) as info:
        run_saved_model(tmp_path / "sm", [{"x": np.ones((3, 3), np.float32)}])
    assert info.value.stage == "run_tensorflow" and info.value.exit_code == 3
    assert "x [3, 3] (float32)" in str(info.value) and "bake_batch" in str(info.value), str(info.value)


def _ort(model, feeds):
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_layer_norm_keeping_rank_matches_onnx_layer_normalization_with_all_outputs():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from converter.sources.onnx_transformer import layer_norm_keeping_rank

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8)).astype(np.float32)
    for axis, stat_shape, stat_dims in ((-1, [2, 3, 1], ["batch", "seq", 1]), (1, [2, 1, 1], ["batch", 1, 1])):
        scale = rng.standard_normal(x.shape[axis:]).astype(np.float32)
        graph = helper.make_graph(
            [helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["y", "mean", "inv_std"], name="ln", axis=axis, epsilon=1e-3)], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 8]),
             helper.make_tensor_value_info("mean", TensorProto.FLOAT, stat_dims), helper.make_tensor_value_info("inv_std", TensorProto.FLOAT, stat_dims)],
            initializer=[numpy_helper.from_array(scale, "scale"), numpy_helper.from_array(-scale, "bias")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        want = _ort(model, {"x": x})
        assert layer_norm_keeping_rank(model) == 1
        onnx.checker.check_model(model)
        assert "LayerNormalization" not in [n.op_type for n in model.graph.node]
        assert "Reshape" not in [n.op_type for n in model.graph.node] and "Flatten" not in [n.op_type for n in model.graph.node]
        for got, expected in zip(_ort(model, {"x": x}), want):
            np.testing.assert_allclose(got, expected, atol=1e-5)
        assert list(want[1].shape) == stat_shape


def test_unflatten_linear_layers_gives_the_same_tensor_without_the_flatten():
    """torch dynamo's Linear on [B, S, 32]: Reshape([-1, 32]) -> Gemm -> Reshape(Concat(Shape(x)[0:2], [4, 8]))."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from converter.sources.onnx_transformer import unflatten_linear_layers

    rng = np.random.default_rng(1)
    c = lambda name, value: numpy_helper.from_array(np.asarray(value), name)  # noqa: E731
    nodes = [helper.make_node("Reshape", ["x", "rows"], ["r"], name="flatten"),
             helper.make_node("Gemm", ["r", "w", "b"], ["g"], name="linear", transB=1),
             helper.make_node("Shape", ["x"], ["xs"], name="shape", start=0, end=2),
             helper.make_node("Concat", ["xs", "heads"], ["target"], name="target", axis=0),
             helper.make_node("Reshape", ["g", "target"], ["y"], name="view", allowzero=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 4, 8])],
                              initializer=[c("rows", np.array([-1, 32], np.int64)), c("w", rng.standard_normal((32, 32)).astype(np.float32)),
                                           c("b", rng.standard_normal(32).astype(np.float32)), c("heads", np.array([4, 8], np.int64))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((3, 5, 32)).astype(np.float32)
    want = _ort(model, {"x": x})[0]
    assert unflatten_linear_layers(model) == 1
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert "Gemm" not in ops and ops.count("MatMul") == 1
    matmul = next(n for n in model.graph.node if n.op_type == "MatMul")
    assert matmul.input[0] == "x"  # on the 3-D tensor, not the flattened rows
    np.testing.assert_allclose(_ort(model, {"x": x})[0], want, atol=1e-5)
