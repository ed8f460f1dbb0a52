"""ONNX control-flow passes (``converter/sources/onnx_control_flow.py``), each checked against onnxruntime.

``specialise_scalar_ifs`` fixes the scalar input an ``If`` branches on; ``inline_constant_ifs``
then keeps the taken branch alone. The rewritten graph must give what the original gives
for the fixed value.
"""

from __future__ import annotations

import numpy as np
import pytest

from converter.errors import ConversionError
from converter.sources.onnx_control_flow import inline_constant_ifs, specialise_scalar_ifs


def _run(model, feeds):
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})


def _rate_switch(cond_op="Equal", nested=False):
    """``y = If(cond_op(sr, 16000)) {x * 2 (or a nested If on x's sum)} {x}``."""
    from onnx import TensorProto, helper, numpy_helper

    f = TensorProto.FLOAT
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    then_nodes = [helper.make_node("Mul", ["x", "two"], ["t"], name="mul")]
    if nested:
        inner_then = helper.make_graph([helper.make_node("Neg", ["t"], ["n"], name="neg")], "inner_then", [], [helper.make_tensor_value_info("n", f, None)])
        inner_else = helper.make_graph([helper.make_node("Abs", ["t"], ["n"], name="abs")], "inner_else", [], [helper.make_tensor_value_info("n", f, None)])
        then_nodes += [helper.make_node("ReduceSum", ["t"], ["s"], name="sum", keepdims=0),
                       helper.make_node("Greater", ["s", "zero"], ["pos"], name="pos"),
                       helper.make_node("If", ["pos"], ["t2"], name="inner", then_branch=inner_then, else_branch=inner_else)]
    then = helper.make_graph(then_nodes, "then", [], [helper.make_tensor_value_info(then_nodes[-1].output[0], f, None)])
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["e"], name="copy")], "else", [], [helper.make_tensor_value_info("e", f, [2, 3])])
    nodes = [helper.make_node(cond_op, ["sr", "rate"], ["c"], name="is16k"),
             helper.make_node("If", ["c"], ["y"], name="If_0", then_branch=then, else_branch=other)]
    inits = [two, numpy_helper.from_array(np.array(16000, np.int64), "rate"), numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    graph = helper.make_graph(nodes, "switch", [helper.make_tensor_value_info("x", f, [2, 3]), helper.make_tensor_value_info("sr", TensorProto.INT64, [])],
                              [helper.make_tensor_value_info("y", f, [2, 3])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


X = np.arange(-3, 3, dtype=np.float32).reshape(2, 3) + 0.5


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("sr", [16000, 8000])
def test_specialise_then_inline_gives_what_the_original_gives_for_that_rate(sr, nested):
    import onnx

    model = _rate_switch(nested=nested)
    (want,) = _run(model, {"x": X, "sr": np.array(sr, np.int64)})
    fixed = specialise_scalar_ifs(model, {"sr": sr})
    assert fixed["sr"]["value"] == sr and fixed["sr"]["from"] == "the --sample file" and fixed["sr"]["if_nodes"] == ["If_0"]
    assert [i.name for i in model.graph.input] == ["x"]
    (got,) = _run(model, {"x": X})
    np.testing.assert_array_equal(got, want)
    # With the condition a constant (as fold_constants leaves it), the If is replaced by its taken branch.
    from onnx import numpy_helper

    c = next(n for n in model.graph.node if n.op_type == "Equal")
    model.graph.node.remove(c)
    model.graph.node.remove(next(n for n in model.graph.node if n.output[0] == "sr"))
    model.graph.initializer.append(numpy_helper.from_array(np.array(sr == 16000), "c"))
    assert inline_constant_ifs(model) == 1  # a nested If (its condition computed from x) stays an If
    assert not any(n.op_type == "If" and n.name == "If_0" for n in model.graph.node)
    onnx.checker.check_model(model, full_check=True)
    (got,) = _run(model, {"x": X})
    np.testing.assert_array_equal(got, want)


def test_inline_keeps_nested_names_unique_with_the_if_name_as_prefix():
    from onnx import numpy_helper

    model = _rate_switch(nested=True)
    model.graph.node.remove(model.graph.node[0])
    model.graph.initializer.append(numpy_helper.from_array(np.array(True), "c"))
    inline_constant_ifs(model)
    names = [n.name for n in model.graph.node]
    assert "If_0/mul" in names and "If_0/inner" in names
    inner = next(n for n in model.graph.node if n.name == "If_0/inner")
    assert inner.input[0] == "If_0/pos" and inner.output[0] == "y"
    (got,) = _run(model, {"x": X, "sr": np.array(16000, np.int64)})
    np.testing.assert_array_equal(got, np.abs(X * 2))  # sum of 2x is 0 here: the inner else branch


def test_the_value_comes_from_metadata_then_the_compared_constant():
    model = _rate_switch()
    model.metadata_props.add(key="sample_rate", value="8000")
    assert specialise_scalar_ifs(model)["sr"] == {"value": 8000, "from": "the model's metadata_props 'sample_rate'", "if_nodes": ["If_0"]}
    (got,) = _run(model, {"x": X})
    np.testing.assert_array_equal(got, X)  # the 8 kHz (else) branch
    model = _rate_switch()
    assert specialise_scalar_ifs(model)["sr"]["from"] == "the constant it is compared with"
    np.testing.assert_array_equal(_run(model, {"x": X})[0], X * 2)


def test_an_if_on_a_scalar_with_no_value_anywhere_is_refused_naming_input_node_and_flag():
    with pytest.raises(ConversionError) as err:
        specialise_scalar_ifs(_rate_switch(cond_op="Greater"))
    assert "If node 'If_0'" in str(err.value) and "scalar input 'sr'" in str(err.value) and "--sample" in str(err.value)


def test_an_if_on_a_tensor_input_is_left_alone():
    model = _rate_switch()
    model.graph.input[1].type.tensor_type.shape.dim.add().dim_value = 1  # sr is [1], not a scalar
    assert specialise_scalar_ifs(model) == {}
    assert inline_constant_ifs(model) == 0


def test_an_if_on_an_unknown_scalar_whose_branches_agree_in_shape_is_left_for_onnx2tf():
    """Both branches declare [2, 3]: onnx2tf's select of both works, so nothing is fixed or refused."""
    model = _rate_switch(cond_op="Greater")
    for branch in model.graph.node[1].attribute:
        shape = branch.g.output[0].type.tensor_type.shape
        del shape.dim[:]
        shape.dim.add().dim_value, shape.dim.add().dim_value = 2, 3
    assert specialise_scalar_ifs(model) == {}
    assert [i.name for i in model.graph.input] == ["x", "sr"]
