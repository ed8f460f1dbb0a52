"""Layout-free graphs keep their inputs' shapes; outputs folded into constants still come out.

Each model is built here, converted by ``OnnxSource.to_saved_model`` (onnx2tf for real)
and compared with onnxruntime on the same inputs.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from converter.sources.onnx_constant_outputs import PLACEHOLDER_SUFFIX, split_constant_outputs
from converter.sources.onnx_layout import channel_nodes, layout_free_inputs


def _model(nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _unsqueeze_model():
    # [3, 4, 5] -> Unsqueeze(axes=[2]) -> [3, 4, 1, 5]: onnx2tf moved x to [3, 5, 4] and gave [3, 5, 1, 4].
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [2])
    return _model([helper.make_node("Unsqueeze", ["x", "axes"], ["y"], name="unsq")],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4, 5])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4, 1, 5])], [axes])


def _shape_model(with_relu: bool):
    nodes = [helper.make_node("Shape", ["x"], ["shape"], name="shape")]
    outputs = [helper.make_tensor_value_info("shape", TensorProto.INT64, [3])]
    if with_relu:
        nodes.append(helper.make_node("Relu", ["x"], ["act"], name="relu"))
        outputs.insert(0, helper.make_tensor_value_info("act", TensorProto.FLOAT, [3, 4, 5]))
    return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4, 5])], outputs)


def _convert_and_run(model, tmp_path, feeds):
    from converter.runtimes.tensorflow import run_saved_model
    from converter.sources.onnx import OnnxSource

    source = OnnxSource(model, batch="static")
    expected = source.run([feeds])[0]
    saved, _ = source.to_saved_model(tmp_path / "w")
    return source, expected, run_saved_model(saved, [feeds])[0]


def test_layout_free_inputs_only_without_channel_ops():
    assert layout_free_inputs(_unsqueeze_model()) == ["x"]
    w = helper.make_tensor("w", TensorProto.FLOAT, [2, 3, 1, 1], np.ones(6, np.float32))
    conv = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv1")],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], [w])
    assert channel_nodes(conv) == {"Conv": ["conv1"]}
    assert layout_free_inputs(conv) == []


def test_unsqueeze_of_a_3d_tensor_keeps_the_onnx_axis(tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    _, expected, got = _convert_and_run(_unsqueeze_model(), tmp_path, {"x": x})
    assert got["y"].shape == (3, 4, 1, 5)
    np.testing.assert_allclose(got["y"], expected["y"], atol=1e-6)


def test_split_constant_outputs_leaves_placeholders_when_every_output_is_constant():
    from converter.sources.onnx import fold_constants

    folded = fold_constants(_shape_model(with_relu=False))
    split, constants = split_constant_outputs(folded)
    np.testing.assert_array_equal(constants["shape"], [3, 4, 5])
    assert [o.name for o in split.graph.output] == ["x" + PLACEHOLDER_SUFFIX]
    assert [o.name for o in folded.graph.output] == ["shape"], "the folded model itself is left as it was"
    onnx.checker.check_model(split)


def test_a_folded_shape_output_comes_out_beside_the_graph_outputs(tmp_path):
    x = np.random.default_rng(1).standard_normal((3, 4, 5)).astype(np.float32)
    source, expected, got = _convert_and_run(_shape_model(with_relu=True), tmp_path, {"x": x})
    assert sorted(got) == ["act", "shape"]
    np.testing.assert_array_equal(got["shape"], expected["shape"])
    np.testing.assert_allclose(got["act"], expected["act"], atol=1e-6)
    assert source.details["constant_outputs"] == ["shape"]


def _reduce_sum_model(noop: int):
    axes = helper.make_tensor("axes", TensorProto.INT64, [0], [])
    node = helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="sum", keepdims=1, noop_with_empty_axes=noop)
    return helper.make_model(helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 2, 2])],
                                               [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2, 2] if noop else [1, 1, 1])],
                                               [axes]),
                             opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def test_empty_reduce_axes_mean_every_axis_or_none(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
    for noop, want_shape in ((0, (1, 1, 1)), (1, (3, 2, 2))):
        _, expected, got = _convert_and_run(_reduce_sum_model(noop), tmp_path / str(noop), {"x": x})
        assert got["y"].shape == want_shape == expected["y"].shape
        np.testing.assert_allclose(got["y"], expected["y"])


def _reduce_after_abs_model(axis: int):
    # ReduceL1 as its function body: ReduceSum(Abs(x)); onnx2tf took Abs's [3, 2, 2] output for channels-last.
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [axis])
    return _model([helper.make_node("Abs", ["x"], ["a"], name="abs"),
                   helper.make_node("ReduceSum", ["a", "axes"], ["y"], name="sum", keepdims=0)],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 2, 2])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])], [axes])


def test_a_reduce_after_an_op_on_equal_trailing_dims_keeps_its_axis(tmp_path):
    x = np.random.default_rng(1).standard_normal((3, 2, 2)).astype(np.float32)
    for axis in (1, 2, -1):
        _, expected, got = _convert_and_run(_reduce_after_abs_model(axis), tmp_path / str(axis), {"x": x})
        assert got["y"].shape == expected["y"].shape
        np.testing.assert_allclose(got["y"], expected["y"], rtol=1e-6)
