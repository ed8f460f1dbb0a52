"""Graphs that run in TensorFlow but used to fail in TF.js (issue 5's classes), now with parity."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("builder", ["class1_grouped_conv", "class3_hardswish", "class3b_gelu_silu"])
def test_converts_and_matches_in_tfjs(tmp_path, builder):
    import fixtures.failure_classes as fc
    from converter import convert

    module, example, _ = getattr(fc, builder)()
    result = convert(module, tmp_path / "out", example_inputs=example)
    for stage in ("tensorflow", "tfjs"):
        assert result.report["parity"][stage]["ok"], result.report["parity"][stage]
    ops = result.report["tfjs"]["op_histogram"]
    assert not any(op in ops for op in ("_FusedHardSwish", "GeluExact", "_MklLayerNorm"))


def _fused_matmul_model(activation: str) -> dict:
    import base64

    ops = [base64.b64encode(op.encode()).decode() for op in ("BiasAdd", activation)]
    node = {"name": "dense/act", "op": "_FusedMatMul", "input": ["x", "w", "b"],
            "attr": {"fused_ops": {"list": {"s": ops}}, "num_args": {"i": "1"}}}
    consumer = {"name": "out", "op": "Identity", "input": ["dense/act"]}
    return {"modelTopology": {"node": [node, consumer]}, "weightsManifest": []}


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


def test_unfuse_pass_lists_activations_no_tfjs_op_exists_for():
    from converter.errors import UnsupportedOpsError
    from converter.export.tfjs_passes import unfuse_unsupported_activations

    with pytest.raises(UnsupportedOpsError, match="GeluExact: 1 node"):
        unfuse_unsupported_activations(_fused_matmul_model("GeluExact"))
