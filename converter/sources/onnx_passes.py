"""Passes on the ONNX graph before onnx2tf, each a named function; ``PASSES`` is the order.

Example:
    >>> model, applied = run_passes(model)
    >>> applied
    {'squeeze_pooled_flatten': 1, 'remove_dead_nodes': 4}
"""

from __future__ import annotations

import numpy as np


def _shapes(model) -> dict[str, list]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return shapes


def _const_value(model, name: str):
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def _producer(model, name: str):
    return next((n for n in model.graph.node if name in n.output), None)


def _is_batch_of_shape(model, name: str) -> bool:
    """True when ``name`` is ``Unsqueeze(Gather(Shape(t), 0))``: some tensor's batch size."""
    node = _producer(model, name)
    if node is not None and node.op_type == "Unsqueeze":
        node = _producer(model, node.input[0])
    if node is None or node.op_type != "Gather":
        return False
    index = _const_value(model, node.input[1])
    shape = _producer(model, node.input[0])
    return index is not None and int(np.asarray(index).ravel()[0]) == 0 and shape is not None and shape.op_type == "Shape"


def _flattens_to_batch(model, node, shapes) -> bool:
    """Does ``node`` turn an ``[N, C, 1, 1]`` tensor into ``[N, C]``?"""
    data = shapes.get(node.input[0])
    if not data or len(data) != 4 or data[1] is None or data[2:] != [1, 1]:
        return False
    if node.op_type == "Flatten":
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        return axis == 1
    if node.op_type != "Reshape":
        return False
    target = _const_value(model, node.input[1])
    if target is not None:
        t = [int(v) for v in np.asarray(target).ravel()]
        return len(t) == 2 and t[1] in (-1, data[1]) and (t[0] == 0 or (data[0] is not None and t[0] == data[0]))
    concat = _producer(model, node.input[1])
    if concat is None or concat.op_type != "Concat" or len(concat.input) != 2:
        return False
    tail = _const_value(model, concat.input[1])
    return tail is not None and [int(v) for v in np.asarray(tail).ravel()] in ([-1], [data[1]]) and _is_batch_of_shape(model, concat.input[0])


def squeeze_pooled_flatten(model) -> int:
    """Turn the flatten after global pooling into a Squeeze, so no Transpose is needed.

    Before::  p = GlobalAveragePool(x) [N, C, 1, 1];  y = Reshape(p, [N, -1])  (or Flatten)
    After::   p = GlobalAveragePool(x) [N, C, 1, 1];  y = Squeeze(p, axes=[2, 3])

    onnx2tf keeps the NCHW element order of a Reshape/Flatten by transposing the
    NHWC tensor back first; for [N, C, 1, 1] the order is the same either way, and
    a Squeeze maps to NHWC axes without any Transpose.
    """
    from onnx import helper, numpy_helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    shapes = _shapes(model)
    count = 0
    for i, node in enumerate(list(model.graph.node)):
        if node.op_type in ("Reshape", "Flatten") and _flattens_to_batch(model, node, shapes):
            name = (node.name or node.output[0]) + "/squeeze"
            if opset >= 13:
                axes = name + "/axes"
                model.graph.initializer.append(numpy_helper.from_array(np.array([2, 3], np.int64), axes))
                new = helper.make_node("Squeeze", [node.input[0], axes], list(node.output), name=name)
            else:
                new = helper.make_node("Squeeze", [node.input[0]], list(node.output), name=name, axes=[2, 3])
            model.graph.node.remove(node)
            model.graph.node.insert(i, new)
            count += 1
    return count


def remove_dead_nodes(model) -> int:
    """Drop nodes (and initializers) whose outputs nothing uses, e.g. a left-over Shape chain."""
    graph_outputs = {o.name for o in model.graph.output}
    removed = 0
    while True:
        used = {name for n in model.graph.node for name in n.input} | graph_outputs
        dead = [n for n in model.graph.node if not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            model.graph.node.remove(n)
        removed += len(dead)
    used = {name for n in model.graph.node for name in n.input} | graph_outputs
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)
    return removed


PASSES = [squeeze_pooled_flatten, remove_dead_nodes]


def run_passes(model):
    """Run ``PASSES`` in order on ``model`` (in place); return it and what each changed."""
    applied = {}
    for p in PASSES:
        n = p(model)
        if n:
            applied[p.__name__] = n
    return model, applied
