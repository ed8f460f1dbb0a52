"""Rewrites of ONNX ops onnx2tf refuses or gets wrong for their element types, into casts around ops it gets right.

Example:
    >>> matching_pow_types(model)   # Pow(x float, y int64) -> Pow(x, Cast(y, float))
    1
"""

from __future__ import annotations

from converter.sources.onnx_graph_query import elem_types, replace_node

_FLOATS = frozenset({1, 10, 11})  # float, float16, double (TensorProto codes)



def matching_pow_types(model) -> int:
    """Give ``Pow``'s base and exponent one element type, as ``tf.pow`` needs.

    ONNX lets them differ (the result has the base's type)::

        Before::  z = Pow(x float, y int64)          z = Pow(x int32, y float)
        After::   z = Pow(x, Cast(y, float))         z = Cast(Pow(Cast(x, float), y), int32)

    onnx2tf failed on all 6 mixed-type Pow node tests. Left alone where a type is unknown.

    Returns:
        How many nodes were rewritten.
    """
    from onnx import helper

    nodes = [n for n in model.graph.node if n.op_type == "Pow"]
    types = elem_types(model) if nodes else {}
    count = 0
    for node in nodes:
        base, exponent = types.get(node.input[0]), types.get(node.input[1])
        if not base or not exponent or base == exponent:
            continue
        name = node.name or node.output[0]
        if base in _FLOATS:
            new = [helper.make_node("Cast", [node.input[1]], [f"{name}/exponent"], name=f"{name}/cast_exponent", to=base),
                   helper.make_node("Pow", [node.input[0], f"{name}/exponent"], list(node.output), name=name)]
        else:
            new = [helper.make_node("Cast", [node.input[0]], [f"{name}/base"], name=f"{name}/cast_base", to=exponent),
                   helper.make_node("Pow", [f"{name}/base", node.input[1]], [f"{name}/power"], name=name),
                   helper.make_node("Cast", [f"{name}/power"], list(node.output), name=f"{name}/cast_back", to=base)]
        replace_node(model, node, new)
        count += 1
    return count


def int_bool_reductions(model) -> int:
    """Reduce a boolean tensor as int32: ``ReduceMax`` / ``ReduceMin`` of bool (opset 20) is Or / And.

    Before::  y = ReduceMax(x bool, axes)
    After::   y = Cast(ReduceMax(Cast(x, int32), axes), bool)

    ``tf.reduce_max`` has no bool kernel; onnx2tf failed both bool node tests.

    Returns:
        How many nodes were rewritten.
    """
    from onnx import TensorProto, helper

    nodes = [n for n in model.graph.node if n.op_type in ("ReduceMax", "ReduceMin")]
    types = elem_types(model) if nodes else {}
    count = 0
    for node in nodes:
        if types.get(node.input[0]) != TensorProto.BOOL:
            continue
        name = node.name or node.output[0]
        reduced = helper.make_node(node.op_type, [f"{name}/as_int", *node.input[1:]], [f"{name}/reduced"], name=name)
        reduced.attribute.extend(node.attribute)
        replace_node(model, node, [helper.make_node("Cast", [node.input[0]], [f"{name}/as_int"], name=f"{name}/to_int", to=TensorProto.INT32),
                               reduced,
                               helper.make_node("Cast", [f"{name}/reduced"], list(node.output), name=f"{name}/to_bool", to=TensorProto.BOOL)])
        count += 1
    return count


def one_sided_isinf(model) -> int:
    """Spell an ``IsInf`` that detects one sign only as ``Equal`` with that infinity.

    Before::  y = IsInf(x, detect_negative=0)
    After::   y = Equal(x, +inf)

    onnx2tf failed both one-sided node tests. Left alone where x's type is unknown
    or neither sign is detected.

    Returns:
        How many nodes were rewritten.
    """
    import numpy as np
    from onnx import helper, numpy_helper
    from onnx.helper import tensor_dtype_to_np_dtype

    nodes = [n for n in model.graph.node if n.op_type == "IsInf"]
    types = elem_types(model) if nodes else {}
    count = 0
    for node in nodes:
        flags = {a.name: a.i for a in node.attribute}
        positive, negative = flags.get("detect_positive", 1), flags.get("detect_negative", 1)
        if positive == negative or types.get(node.input[0]) is None:
            continue
        name = node.name or node.output[0]
        value = np.array(np.inf if positive else -np.inf, tensor_dtype_to_np_dtype(types[node.input[0]]))
        model.graph.initializer.append(numpy_helper.from_array(value, f"{name}/infinity"))
        replace_node(model, node, [helper.make_node("Equal", [node.input[0], f"{name}/infinity"], list(node.output), name=name)])
        count += 1
    return count
