"""The ONNX passes that expand function ops and rewrite ops onnx2tf gets wrong, checked against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from converter.errors import UnsupportedOpsError
from converter.sources.onnx import check_supported_ops
from converter.sources.onnx_functions import expand_functions
from converter.sources.onnx_op_rewrites import explicit_kernel_shape, lift_batch_moving_transposes, reversing_slice_to_gather, slice_indices
from converter.sources.onnx_passes import run_passes

RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, inits=(), opset=23):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _run(model, feeds):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(None, feeds)


def _rms_model():
    scale = numpy_helper.from_array(RNG.normal(size=(8,)).astype(np.float32), "scale")
    node = helper.make_node("RMSNormalization", ["x", "scale"], ["y"], axis=-1, epsilon=1e-5)
    return _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 8])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 8])], [scale])


def test_rms_normalization_expands_into_primitives_with_the_same_values():
    model = _rms_model()
    x = RNG.normal(size=(2, 5, 8)).astype(np.float32)
    want = _run(model, {"x": x})[0]
    assert expand_functions(model) == 1
    ops = {n.op_type for n in model.graph.node}
    assert "RMSNormalization" not in ops and {"ReduceMean", "Sqrt"} <= ops
    assert not any(n.op_type in ("Shape", "Size", "Range") for n in model.graph.node), "the axes arithmetic is folded"
    np.testing.assert_allclose(_run(model, {"x": x})[0], want, rtol=1e-5, atol=1e-6)


def test_layer_normalization_with_its_optional_outputs_expands_and_matches():
    scale, bias = (numpy_helper.from_array(RNG.normal(size=(6,)).astype(np.float32), n) for n in ("s", "b"))
    node = helper.make_node("LayerNormalization", ["x", "s", "b"], ["y", "mean", "inv"], axis=-1)
    f = TensorProto.FLOAT
    model = _model([node], [helper.make_tensor_value_info("x", f, [3, 4, 6])],
                   [helper.make_tensor_value_info(n, f, None) for n in ("y", "mean", "inv")], [scale, bias], opset=17)
    x = RNG.normal(size=(3, 4, 6)).astype(np.float32)
    want = _run(model, {"x": x})
    assert expand_functions(model) == 1, "onnx2tf has a LayerNormalization converter, measured wrong: expand it"
    assert "LayerNormalization" not in {n.op_type for n in model.graph.node}
    for got, ref in zip(_run(model, {"x": x}), want):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_a_graph_onnx2tf_converts_is_left_alone():
    w = numpy_helper.from_array(RNG.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3]), helper.make_node("Relu", ["c"], ["y"])]
    model = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w], opset=13)
    before = model.SerializeToString()
    assert expand_functions(model) == 0 and reversing_slice_to_gather(model) == 0
    assert model.SerializeToString() == before


def test_the_op_check_accepts_an_expandable_op_until_the_pass_is_disabled():
    model = _rms_model()
    check_supported_ops(model)  # RMSNormalization has a function body: accepted before the passes
    with pytest.raises(UnsupportedOpsError, match="RMSNormalization"):
        check_supported_ops(model, expandable_ok=False)
    expanded, applied = run_passes(_rms_model())
    assert applied["expand_functions"] == 1
    check_supported_ops(expanded, expandable_ok=False)
    _, applied = run_passes(_rms_model(), disabled=("expand_functions",))
    assert "expand_functions" not in applied


def test_a_reversing_slice_becomes_a_gather_with_the_same_values():
    consts = {k: numpy_helper.from_array(np.array(v, np.int64), k)
              for k, v in {"starts": [-1], "ends": [-(2**63) + 1], "axes": [1], "steps": [-1]}.items()}
    node = helper.make_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])
    model = _model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], consts.values(), opset=13)
    x = RNG.normal(size=(2, 3, 4)).astype(np.float32)
    assert reversing_slice_to_gather(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Gather"]
    np.testing.assert_array_equal(_run(model, {"x": x})[0], x[:, ::-1])
    assert slice_indices(5, 3, 0, -2) == [3, 1] and slice_indices(4, 0, 100, 1) == [0, 1, 2, 3]


def test_conv_transpose_gets_the_kernel_shape_of_its_weights():
    w = numpy_helper.from_array(RNG.normal(size=(1, 2, 3, 3)).astype(np.float32), "w")
    model = _model([helper.make_node("ConvTranspose", ["x", "w"], ["y"])],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 3])],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w], opset=13)
    x = RNG.normal(size=(1, 1, 3, 3)).astype(np.float32)
    want = _run(model, {"x": x})[0]
    assert explicit_kernel_shape(model) == 1
    assert helper.get_attribute_value(model.graph.node[0].attribute[0]) == [3, 3]
    np.testing.assert_allclose(_run(model, {"x": x})[0], want, rtol=1e-6)


@pytest.mark.parametrize("dims, perm, opset", [(["b", 8, "t"], [2, 0, 1], 17), (["b", "c", "t"], [1, 2, 0], 17),
                                               (["b", 3, "h", "w"], [2, 0, 3, 1], 17), (["b", 8, "t"], [2, 0, 1], 11)])
def test_a_transpose_that_moves_the_batch_is_lifted_a_rank_with_the_same_values(dims, perm, opset):
    """Two unknown output dims: channels-last Transpose, Unsqueeze(0), a perm keeping axis 0, Squeeze(0)."""
    model = _model([helper.make_node("Transpose", ["x"], ["y"], name="T", perm=perm)],
                   [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], opset=opset)
    x = RNG.normal(size=[d if isinstance(d, int) else 2 + i for i, d in enumerate(dims)]).astype(np.float32)
    assert lift_batch_moving_transposes(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Transpose", "Unsqueeze", "Transpose", "Squeeze"]
    lifted = helper.get_attribute_value(model.graph.node[2].attribute[0])
    assert lifted[0] == 0 and helper.get_attribute_value(model.graph.node[0].attribute[0])[0] == 0
    np.testing.assert_array_equal(_run(model, {"x": x})[0], x.transpose(perm))


def test_a_transpose_onnx2tf_reads_right_is_left_alone():
    """Axis 0 kept, or one unknown output dim (the fixed-batch LSTM's [frames, 1, 8]): no rewrite."""
    f = TensorProto.FLOAT
    for dims, perm in ((["b", 8, "t"], [0, 2, 1]), ([1, 8, "t"], [2, 0, 1])):
        model = _model([helper.make_node("Transpose", ["x"], ["y"], perm=perm)], [helper.make_tensor_value_info("x", f, dims)],
                       [helper.make_tensor_value_info("y", f, None)], opset=17)
        assert lift_batch_moving_transposes(model) == 0
