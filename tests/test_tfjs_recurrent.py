"""Issue 5, class 9: recurrent nets and control flow convert with TF.js parity, or are refused by name."""

from __future__ import annotations

import json

import numpy as np
import pytest


def _convert(tmp_path, builder):
    import fixtures.failure_classes as fc
    from converter import convert

    src, example, _ = getattr(fc, builder)(tmp_path / "src")
    if example is not None:
        return convert(src, tmp_path / "out", example_inputs=example)
    return convert(src, tmp_path / "out")


@pytest.mark.parametrize("builder", ["class9_lstm_state", "class9b_gru_state"])
def test_recurrent_state_in_and_out_matches_in_tfjs(tmp_path, builder):
    result = _convert(tmp_path, builder)
    for stage in ("tensorflow", "tfjs"):
        assert result.report["parity"][stage]["ok"], result.report["parity"][stage]
    assert result.report["source"]["batch"].startswith("static")  # h0's dim 0 is num_layers, not a batch
    assert result.report["tfjs"]["passes"].get("unfuse_computed_biases")


@pytest.mark.parametrize("builder,copied", [("class9c_onnx_if", 2), ("class9e_onnx_if_local_constants", None)])
def test_if_runs_both_branches_in_tfjs(tmp_path, builder, copied):
    """Branches reading outer initializers (copied in) or holding their own constants (left as they are)."""
    from converter.runtimes.tfjs_node import run_bundle

    result = _convert(tmp_path, builder)
    assert result.report["parity"]["tfjs"]["ok"]
    assert result.report["source"]["onnx_passes"].get("copy_outer_initializers_into_branches") == copied
    meta = json.loads((result.bundle / "metadata.json").read_text())
    assert meta["executeAsync"] is True  # Switch/Merge run only in executeAsync
    x = np.linspace(0.5, 1.5, 8, dtype=np.float32).reshape(1, 8)
    (pos,), (neg,) = (list(run_bundle(result.bundle, [{"x": s}]).samples[0].values()) for s in (x, -x))
    np.testing.assert_allclose(pos, x * 2, atol=1e-6)
    np.testing.assert_allclose(neg, -x - 1, atol=1e-6)


def test_loop_is_refused_by_name_before_onnx2tf(tmp_path):
    import fixtures.failure_classes as fc
    from converter import convert
    from converter.errors import UnsupportedOpsError

    path, _, _ = fc.class9d_onnx_loop(tmp_path)
    with pytest.raises(UnsupportedOpsError, match=r"Loop: 1 node\(s\): loop") as err:
        convert(path, tmp_path / "out")
    assert "onnx2tf" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_fused_matmul_with_a_computed_bias_is_split():
    from converter.export.tfjs_passes import _set_strings, unfuse_computed_biases

    def fused(name, bias, acts):
        node = {"name": name, "op": "_FusedMatMul", "input": ["a", "w", bias], "attr": {
            "transpose_a": {"b": False}, "num_args": {"i": "1"}, "fused_ops": {}, "T": {"type": "DT_FLOAT"}}}
        _set_strings(node["attr"]["fused_ops"], ["BiasAdd", *acts])
        return node

    model = {"modelTopology": {"node": [fused("gate", "h/state", ["Sigmoid"]), fused("dense", "b", [])]},
             "weightsManifest": [{"paths": ["x.bin"], "weights": [{"name": "b", "shape": [8], "dtype": "float32"}]}]}
    assert unfuse_computed_biases(model) == 1
    mm, add, act, dense = model["modelTopology"]["node"]
    assert (mm["op"], mm["input"], sorted(mm["attr"])) == ("MatMul", ["a", "w"], ["T", "transpose_a"])
    assert (add["op"], add["input"]) == ("AddV2", [mm["name"], "h/state"])
    assert (act["name"], act["op"], act["input"]) == ("gate", "Sigmoid", [add["name"]])  # consumers keep their input
    assert dense["op"] == "_FusedMatMul"  # a weight bias stays fused
