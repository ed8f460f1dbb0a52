"""Resize rewritten into per-axis maps: exact against onnxruntime, also between convolutions."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from converter.sources.onnx_resize import resize_to_axis_maps


def _conv_resize_conv(mode: str, ctm: str, scale: float):
    # Conv -> Resize -> Conv: the Resize's input and output are channels-last inside onnx2tf.
    rng = np.random.default_rng(0)
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [4, 3, 3, 3], rng.standard_normal(108).astype(np.float32))
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [2, 4, 1, 1], rng.standard_normal(8).astype(np.float32))
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, scale, scale])
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Resize", ["a", "", "scales"], ["b"], name="resize", mode=mode,
                              coordinate_transformation_mode=ctm),
             helper.make_node("Conv", ["b", "w2"], ["y"], name="conv2")]
    out = int(6 * scale)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, out, out])], [w1, w2, scales])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)


def test_integer_nearest_upsampling_is_left_to_onnx2tf():
    model = _conv_resize_conv("nearest", "asymmetric", 2.0)
    assert resize_to_axis_maps(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Conv", "Resize", "Conv"]


@pytest.mark.parametrize("mode,ctm,scale", [("linear", "align_corners", 2.0), ("cubic", "half_pixel", 0.5)])
def test_resize_between_convs_matches_onnxruntime(tmp_path, mode, ctm, scale):
    from converter.layout import converted_layout, to_layout
    from converter.runtimes.tensorflow import run_saved_model, signature_specs
    from converter.sources.onnx import OnnxSource

    rewritten = _conv_resize_conv(mode, ctm, scale)
    assert resize_to_axis_maps(rewritten) == 1 and "Resize" not in [n.op_type for n in rewritten.graph.node]
    source = OnnxSource(_conv_resize_conv(mode, ctm, scale), batch="static")
    x = np.random.default_rng(1).standard_normal((1, 3, 6, 6)).astype(np.float32)
    want = source.run([{"x": x}])[0]["y"]
    saved, _ = source.to_saved_model(tmp_path / "w")
    assert source.details["onnx_passes"]["resize_to_axis_maps"] == 1
    (key, (shape, _)), = signature_specs(saved)[0].items()
    got = run_saved_model(saved, [{key: to_layout(x, *converted_layout([1, 3, 6, 6], shape))}])[0]["y"]
    got = to_layout(got, *reversed(converted_layout(list(want.shape), list(got.shape))))
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)
