"""Graphs that run in TensorFlow but used to fail in TF.js (issue 5's classes), now with parity."""

from __future__ import annotations

import pytest


# builder -> the TF.js passes that must have rewritten its graph for wasm to run it.
FUSION_CASES = {
    "class1_grouped_conv": {},
    "class2_dense_block": set(),  # TF 2.19's grappler keeps its BN shifts as Mul/AddV2 (see the rank-4 bias test)
    "class3_hardswish": set(),
    "class3b_gelu_silu": set(),
}


@pytest.mark.parametrize("builder", list(FUSION_CASES))
def test_converts_and_matches_in_tfjs(tmp_path, builder):
    import fixtures.failure_classes as fc
    from converter import convert

    module, example, _ = getattr(fc, builder)()
    result = convert(module, tmp_path / "out", example_inputs=example)
    for stage in ("tensorflow", "tfjs"):
        assert result.report["parity"][stage]["ok"], result.report["parity"][stage]
    ops = result.report["tfjs"]["op_histogram"]
    assert not any(op in ops for op in ("_FusedHardSwish", "GeluExact", "_MklLayerNorm"))
    assert set(FUSION_CASES[builder]) <= set(result.report["tfjs"]["passes"]), result.report["tfjs"]["passes"]


def _fused_matmul_model(activation: str) -> dict:
    import base64

    ops = [base64.b64encode(op.encode()).decode() for op in ("BiasAdd", activation)]
    node = {"name": "dense/act", "op": "_FusedMatMul", "input": ["x", "w", "b"],
            "attr": {"fused_ops": {"list": {"s": ops}}, "num_args": {"i": "1"}}}
    consumer = {"name": "out", "op": "Identity", "input": ["dense/act"]}
    return {"modelTopology": {"node": [node, consumer]}, "weightsManifest": []}


def _conv_plus_rank4_bias(folder):
    """A SavedModel whose conv is followed by an ``Add`` of a [1, 1, 1, C] constant (a folded BN shift)."""
    import numpy as np
    import tensorflow as tf

    w = tf.constant(np.random.RandomState(0).randn(3, 3, 3, 8).astype("float32"))
    b = tf.constant(np.random.RandomState(1).randn(1, 1, 1, 8).astype("float32"))

    class ConvShift(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 16, 16, 3], tf.float32, name="image")])
        def serve(self, image):
            return {"y": tf.nn.relu(tf.nn.conv2d(image, w, 1, "SAME") + b)}

    module = ConvShift()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


def test_rank4_bias_grappler_folds_into_a_conv_is_flattened_and_runs_in_tfjs(tmp_path):
    from converter import ConvertOptions, ExportOptions, convert
    from converter.errors import UnsupportedOpsError

    saved = _conv_plus_rank4_bias(tmp_path / "sm")
    result = convert(saved, tmp_path / "out")
    assert result.report["tfjs"]["passes"].get("flatten_fused_biases", 0) >= 1, result.report["tfjs"]["passes"]
    assert result.report["parity"]["tfjs"]["ok"], result.report["parity"]["tfjs"]
    # Without the pass the export is refused before anything is written, naming the node.
    with pytest.raises(UnsupportedOpsError, match=r"rank-4 bias[\s\S]*Relu"):
        convert(saved, tmp_path / "out2", ConvertOptions(export=ExportOptions(disabled_passes=("flatten_fused_biases",))))
    assert not (tmp_path / "out2").exists()


def test_unfuse_pass_splits_an_activation_wasm_cannot_fuse():
    from converter.export.tfjs_passes import _strings, unfuse_unsupported_activations

    model = _fused_matmul_model("Tanh")
    assert unfuse_unsupported_activations(model) == 1
    pre, act, out = model["modelTopology"]["node"]
    assert (pre["name"], _strings(pre["attr"]["fused_ops"])) == ("dense/act/pre_activation", ["BiasAdd"])
    assert (act["name"], act["op"], act["input"]) == ("dense/act", "Tanh", ["dense/act/pre_activation"])
    assert out["input"] == ["dense/act"]  # consumers untouched
    relu = _fused_matmul_model("Relu")
    assert unfuse_unsupported_activations(relu) == 0  # wasm fuses relu itself


def test_activation_no_tfjs_op_exists_for_stays_fused_and_is_refused(tmp_path):
    import json

    from converter.errors import UnsupportedOpsError
    from converter.export.tfjs_ops import check_runtime_support, unsupported_ops
    from converter.export.tfjs_passes import unfuse_unsupported_activations

    model = _fused_matmul_model("GeluExact")
    assert unfuse_unsupported_activations(model) == 0
    problems = unsupported_ops(model)
    assert list(problems.values()) == [["dense/act"]]
    assert "fused activation GeluExact" in next(iter(problems))
    # The check every export runs refuses it, naming the node.
    model_json = tmp_path / "model.json"
    model_json.write_text(json.dumps(model))
    with pytest.raises(UnsupportedOpsError, match=r"GeluExact[\s\S]*dense/act"):
        check_runtime_support(model_json)


def test_compat_check_lists_every_unsupported_op_in_one_error(tmp_path):
    import base64
    import json

    from converter.errors import UnsupportedOpsError
    from converter.export.tfjs_ops import check_runtime_support

    def fused(name, ops):
        return {"name": name, "op": "_FusedConv2D", "input": ["x", "w", "b"], "attr": {
            "fused_ops": {"list": {"s": [base64.b64encode(o.encode()).decode() for o in ops]}}, "num_args": {"i": "1"}}}

    nodes = [
        {"name": "x", "op": "Placeholder"},
        {"name": "a/frob", "op": "FrobnicateV7", "input": ["x"]},
        {"name": "b/frob", "op": "FrobnicateV7", "input": ["a/frob"]},
        {"name": "c/quux", "op": "QuuxPool", "input": ["b/frob"]},
        {"name": "d/einsum", "op": "Einsum", "input": ["c/quux", "c/quux"]},  # cpu has it, wasm does not
        fused("e/conv", ["BiasAdd", "Relu"]),  # fine
        fused("f/conv", ["BiasAdd", "Add", "Relu"]),  # the executor would drop the Add
        {"name": "out", "op": "Identity", "input": ["f/conv"]},
    ]
    model_json = tmp_path / "model.json"
    model_json.write_text(json.dumps({"modelTopology": {"node": nodes}, "weightsManifest": []}))
    with pytest.raises(UnsupportedOpsError) as err:
        check_runtime_support(model_json)
    message = str(err.value)
    assert message.startswith("4 op type(s) not supported by TF.js 4.22.0 (wasm backend)")
    for expected in ("FrobnicateV7: 2 node(s): a/frob, b/frob", "QuuxPool: 1 node(s): c/quux",
                     "Einsum (no wasm kernel): 1 node(s): d/einsum", "fused_ops=BiasAdd+Add+Relu"):
        assert expected in message, message
    assert "e/conv" not in message


def test_committed_runtime_answer_matches_the_installed_runtime():
    """``tfjs_runtime/<version>.json`` is what ``js/runtime_ops.mjs`` says now (it cannot drift)."""
    import json

    from converter.runtimes.tfjs_support import ask_runtime, installed_tfjs_version, runtime_support

    version = installed_tfjs_version()
    fresh = json.loads(ask_runtime())
    assert fresh["tfjs"] == version
    assert runtime_support(version) == fresh, f"regenerate: node js/runtime_ops.mjs > converter/runtimes/tfjs_runtime/{version}.json"
    assert {"relu", "relu6", "sigmoid"} <= set(fresh["fusable_activations"]["wasm"])
    assert {"_FusedConv2D", "_FusedMatMul", "FusedDepthwiseConv2dNative", "Switch", "Merge"} <= set(fresh["converter_ops"])


# Classes 4-7: each fixture converts, and TensorFlow and TF.js (wasm) both match the source.
LAYOUT_AND_GRAPH_CASES = [
    ("class4b_layout_ops_opset9", {"upgrade_old_opset": 1}),  # opset-9 Softmax/LogSoftmax over C*H*W, upgraded to opset 13
    ("class4c_layout_ops_opset13", {}),  # outputs sharing dtype and shape keep their names in TF.js
    ("class5_dynamic_hw", {}),  # ONNX [batch, 3, height, width]: H/W sized, batch kept dynamic
    ("class5b_dynamic_hw_pt2", {}),  # .pt2 with dynamic H/W: stays dynamic
    ("class6_transformer_mha", {}),  # nn.MultiheadAttention encoder, int64 ids
    ("class6b_transformer_hand", {"layer_norm_keeping_rank": 2, "constants_to_initializers": 4}),  # LayerNorm as trailing-axis reductions; float attention scale
    ("class7_yolo_dist2bbox", {"static_reshape_targets": 2}),  # Reshape targets from Shape
]


@pytest.mark.parametrize("builder,passes", LAYOUT_AND_GRAPH_CASES, ids=[c[0] for c in LAYOUT_AND_GRAPH_CASES])
def test_layout_and_graph_classes_match_in_tfjs(tmp_path, builder, passes):
    import fixtures.failure_classes as fc
    from converter import convert

    src, example, _ = getattr(fc, builder)(tmp_path / "src")
    output_names = next(c[3] for c in fc.CASES if c[1].__name__ == builder)
    kwargs = {"example_inputs": example, "output_names": output_names} if output_names else {}
    result = convert(src, tmp_path / "out", **kwargs)
    for stage in ("tensorflow", "tfjs"):
        parity = result.report["parity"][stage]
        assert parity["ok"] and all(o["shape_ok"] for o in parity["outputs"].values()), parity
    applied = result.report["source"].get("onnx_passes", {})
    assert {k: applied.get(k) for k in passes} == passes, applied
    if builder == "class5_dynamic_hw":  # H/W stay dynamic (issue 11: no silent 224)
        assert "fixed_input_shapes" not in result.report["source"]
        assert result.model.inputs[0].shape == [None, None, None, 3]
    if builder == "class5b_dynamic_hw_pt2":
        assert result.model.inputs[0].shape == [1, None, None, 3]
    if builder.startswith("class6"):
        meta = result.report["model"]["inputs"][0]
        assert meta["dtype"] == "int64"
        bundle_meta = __import__("json").loads((tmp_path / "out" / "tfjs" / "metadata.json").read_text())
        assert bundle_meta["inputs"][0]["dtype"] == "int32"  # TF.js has no int64: JS callers pass Int32Array


def test_dynamic_hw_sized_from_the_sample_file_only_where_needed(tmp_path):
    import numpy as np
    import onnx

    import fixtures.failure_classes as fc
    from converter.errors import ConversionError
    from converter.sources.onnx import load_onnx_source
    from converter.sources.onnx_shapes import fix_dynamic_dims

    path, _, _ = fc.class5_dynamic_hw(tmp_path)
    np.savez(tmp_path / "sample.npz", image=np.zeros((1, 3, 40, 48), np.float32))
    source = load_onnx_source(path, sample_file=tmp_path / "sample.npz")
    assert source.inputs[0].shape == [None, 3, None, None]  # kept dynamic at load
    fixed = fix_dynamic_dims(source.model, source.sample_shapes, "a test needs it")
    assert fixed["image"]["shape"] == [1, 3, 40, 48] and fixed["image"]["from"] == "the --sample file"
    # A dynamic dim with nothing to size it: one error naming it and the options.
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "channels"
    with pytest.raises(ConversionError, match=r"image: dims 1 \('channels'\), 2 \('height'\), 3 \('width'\)[\s\S]*--input-shape image:"):
        fix_dynamic_dims(model, None, "a test needs it")


def test_pre13_softmax_pass_spells_out_the_2d_coercion():
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from converter.sources.onnx_passes import explicit_pre13_softmax

    def model():
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, 4, 5])
        nodes = [helper.make_node("Softmax", ["x"], ["a"], axis=1), helper.make_node("LogSoftmax", ["x"], ["b"], axis=2),
                 helper.make_node("Softmax", ["x"], ["c"], axis=3)]  # last axis: both meanings agree, left alone
        outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 3, 4, 5]) for n in "abc"]
        return helper.make_model(helper.make_graph(nodes, "g", [x], outs), opset_imports=[helper.make_opsetid("", 11)])

    before, after = model(), model()
    assert explicit_pre13_softmax(after) == 2
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    want = ort.InferenceSession(before.SerializeToString()).run(None, {"x": x})
    got = ort.InferenceSession(after.SerializeToString()).run(None, {"x": x})
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, atol=1e-6)
    assert abs(want[0].reshape(2, -1).sum(1) - 1).max() < 1e-5  # normalised over C*H*W, not over C


def test_static_reshape_targets_pass_keeps_the_batch_dynamic():
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from converter.sources.onnx_passes import remove_dead_nodes, static_reshape_targets

    def model():
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 8, 8])
        inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("zero", [0]), ("two", [2]), ("minus1", [-1]))]
        nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Slice", ["s", "zero", "two"], ["head"]),
                 helper.make_node("Concat", ["head", "minus1"], ["target"], axis=0), helper.make_node("Reshape", ["x", "target"], ["y"])]
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 64])
        return helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializer=inits), opset_imports=[helper.make_opsetid("", 13)])

    m = model()
    assert static_reshape_targets(m) == 1 and remove_dead_nodes(m) == 3
    assert [n.op_type for n in m.graph.node] == ["Reshape"]
    target = next(numpy_helper.to_array(i) for i in m.graph.initializer if i.name == m.graph.node[0].input[1])
    assert target.tolist() == [0, 4, -1]
    x = np.random.default_rng(0).standard_normal((3, 4, 8, 8)).astype(np.float32)
    np.testing.assert_array_equal(ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0], x.reshape(3, 4, 64))


def test_converted_layout_prefers_the_reading_where_known_sizes_agree():
    from converter.layout import converted_layout

    assert converted_layout([1, 3, None, None], [1, None, None, 3]) == ("NCHW", "NHWC")
    assert converted_layout([None, 12, 16], [None, 12, 16]) == (None, None)
    assert converted_layout([8, 8, 8], [8, 8, 8]) == (None, None)
