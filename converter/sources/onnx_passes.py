"""Passes on the ONNX graph before onnx2tf, each a named function; ``PASSES`` is the order.

Example:
    >>> model, applied = run_passes(model)
    >>> applied
    {'squeeze_pooled_flatten': 1, 'remove_dead_nodes': 4}
"""

from __future__ import annotations

import numpy as np

from converter.passes import run_in_order
from converter.sources.onnx_compat import sanitize_node_names, upgrade_old_opset
from converter.sources.onnx_control_flow import inline_constant_ifs
from converter.sources.onnx_dtype_rewrites import int_bool_reductions, matching_pow_types, one_sided_isinf
from converter.sources.onnx_functions import expand_functions
from converter.sources.onnx_layout import channel_nodes
from converter.sources.onnx_graph_query import const_value as _const_value, has_op, producer as _producer, replace_node, shapes as _shapes, symbolic_shapes as _symbolic_shapes
from converter.sources.onnx_op_rewrites import (broadcasting_sum_to_adds, explicit_kernel_shape, explicit_reduce_axes, lift_batch_moving_transposes,
                                                reshape_scalar_inputs, reversing_slice_to_gather, truncated_fmod, unbounded_clip_to_identity)
from converter.sources.onnx_resize import resize_to_axis_maps
from converter.sources.onnx_transformer import expand_gelu, layer_norm_keeping_rank, split_multi_axis_unsqueeze, unflatten_linear_layers


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

    if not has_op(model, "Reshape", "Flatten"):
        return 0
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


_COERCING_OPS = ("Softmax", "LogSoftmax", "Hardmax")


def explicit_pre13_softmax(model) -> int:
    """Spell out the 2-D coercion of opset < 13 Softmax/LogSoftmax/Hardmax.

    Before opset 13, ``Softmax(x, axis=a)`` flattens ``x`` to 2-D at ``a`` and
    normalises over all of ``x.shape[a:]``; onnx2tf applies it over axis ``a`` alone
    (its opset-13 meaning), a silent error once the trailing dims are not all 1::

        Before::  y = Softmax(x [N, C, H, W], axis=1)            (over C*H*W values)
        After::   f = Flatten(x, axis=1) [N, C*H*W];  s = Softmax(f, axis=1)
                  y = Reshape(s, [-1, C, H, W])

    Left alone where both meanings agree: ``a`` is the last axis, or every dim after it is 1.
    The Reshape target is static (one unknown dim becomes -1); with more unknown dims
    it is ``Shape(x)``.
    """
    from onnx import helper, numpy_helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if opset >= 13:
        return 0
    shapes = _shapes(model)
    count = 0
    for node in list(model.graph.node):
        shape = shapes.get(node.input[0]) if node.op_type in _COERCING_OPS else None
        if not shape:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        axis = axis + len(shape) if axis < 0 else axis
        if axis >= len(shape) - 1 or all(d == 1 for d in shape[axis + 1:]):
            continue
        base = node.name or node.output[0]
        flat, normed, target = base + "/flatten_2d", base + "/over_2d", base + "/shape"
        new = [
            helper.make_node("Flatten", [node.input[0]], [flat], name=flat, axis=axis),
            helper.make_node(node.op_type, [flat], [normed], name=normed, axis=1),
        ]
        if shape.count(None) <= 1:
            model.graph.initializer.append(numpy_helper.from_array(np.array([-1 if d is None else d for d in shape], np.int64), target))
        else:
            new.append(helper.make_node("Shape", [node.input[0]], [target], name=target))
        new.append(helper.make_node("Reshape", [normed, target], list(node.output), name=base + "/reshape"))
        replace_node(model, node, new)
        count += 1
    return count


def _subgraph_inputs(graph) -> set[str]:
    """Every tensor name read by a node inside a subgraph (If/Loop/Scan bodies)."""
    names = set()
    for node in graph.node:
        for attr in node.attribute:
            for g in list(attr.graphs) + ([attr.g] if attr.g.ByteSize() else []):
                names |= {n for sub in g.node for n in sub.input} | _subgraph_inputs(g)
    return names


def constants_to_initializers(model) -> int:
    """Turn ``Constant`` nodes of the main graph into initializers.

    Before::  c = Constant(value=0.3535);  y = Mul(x, c)
    After::   initializer c = 0.3535;      y = Mul(x, c)

    onnxsim leaves small ``Constant`` nodes in place (an attention scale written as
    a Python float, GELU's 0.5 and sqrt(2)); onnx2tf turns a scalar one into a Python
    number, and a ``Mul`` by it after a ``MatMul`` becomes a plain float in its Keras
    graph ("Output tensors of a Functional model must be the output of a TensorFlow
    `Layer`"). An initializer becomes a constant tensor instead.
    """
    from onnx import numpy_helper

    taken = {i.name for i in model.graph.initializer} | {o.name for o in model.graph.output} | _subgraph_inputs(model.graph)
    count = 0
    for node in list(model.graph.node):
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or node.output[0] in taken:
            continue  # graph outputs, and names If/Loop branches read (onnx2tf misses outer initializers), stay nodes
        attr = node.attribute[0] if len(node.attribute) == 1 else None
        if attr is None or attr.name not in ("value", "value_float", "value_floats", "value_int", "value_ints"):
            continue  # sparse or string constants stay nodes
        if attr.name == "value":
            value = numpy_helper.to_array(attr.t)
        elif attr.name.startswith("value_float"):
            value = np.array(attr.f if attr.name == "value_float" else list(attr.floats), np.float32)
        else:
            value = np.array(attr.i if attr.name == "value_int" else list(attr.ints), np.int64)
        model.graph.initializer.append(numpy_helper.from_array(value, node.output[0]))
        model.graph.node.remove(node)
        count += 1
    return count


def _shape_items(model, name: str, shapes: dict, depth: int = 0):
    """The 1-D int tensor ``name`` as a list of ints and ``("dim", tensor, axis)`` items, or ``None``.

    Follows what exporters build Reshape targets from: Shape, Slice, Gather, Concat,
    Unsqueeze, Squeeze and Cast of constants and of other tensors' shapes.
    """
    value = _const_value(model, name)
    if value is not None:
        return [int(v) for v in np.asarray(value).ravel()] if np.asarray(value).dtype.kind in "iu" else None
    node = _producer(model, name)
    if node is None or depth > 12:
        return None
    attrs = {a.name: a for a in node.attribute}
    if node.op_type == "Shape":
        rank = len(shapes.get(node.input[0]) or []) or None
        if rank is None:
            return None
        start, end = (attrs["start"].i if "start" in attrs else 0), (attrs["end"].i if "end" in attrs else rank)
        return [("dim", node.input[0], i) for i in range(rank)][start:end]
    if node.op_type in ("Unsqueeze", "Squeeze", "Cast", "Identity"):
        return _shape_items(model, node.input[0], shapes, depth + 1)
    if node.op_type == "Concat":
        parts = [_shape_items(model, i, shapes, depth + 1) for i in node.input]
        return None if any(p is None for p in parts) else [x for p in parts for x in p]
    if node.op_type == "Gather":
        data, index = _shape_items(model, node.input[0], shapes, depth + 1), _const_value(model, node.input[1])
        if data is None or index is None or ("axis" in attrs and attrs["axis"].i != 0):
            return None
        return [data[int(k)] for k in np.asarray(index).ravel()]
    if node.op_type == "Slice" and len(node.input) >= 3:
        data = _shape_items(model, node.input[0], shapes, depth + 1)
        params = [_const_value(model, n) if n else None for n in node.input[1:5]]
        if data is None or params[0] is None or params[1] is None:
            return None
        step = int(np.asarray(params[3]).ravel()[0]) if len(params) > 3 and params[3] is not None else 1
        start, end = int(np.asarray(params[0]).ravel()[0]), int(np.asarray(params[1]).ravel()[0])
        return data[start:max(min(end, len(data)), -len(data) - 1):step]
    return None


def static_reshape_targets(model) -> int:
    """Replace Reshape targets computed from ``Shape`` by constants (0 or -1 for the dynamic dim).

    Before::  t = Concat(Slice(Shape(x), 0, 2), [-1]);  y = Reshape(x [N, 4, 8, 8], t)
    After::   y = Reshape(x, [0, 4, -1])     (0: keep x's dim 0, the dynamic batch)

    ``torch.flatten(x, 2)`` and ``x.view(b, c, -1)`` export so with a dynamic batch;
    onnx2tf cannot see the target, loses the output shape, and fails at the next
    broadcast (YOLOv8's box decoding: "Dimensions must be equal ... [?,8,?] vs [1,64,2]").
    Known dims become numbers; a dynamic dim copied from the same position of the
    Reshape's input becomes 0; one other dynamic dim becomes -1; otherwise the
    target stays as it is. With a dynamic height/width, the batch is read with
    ``Gather(Shape(x), [0])`` instead of 0 (see ``_batch_from_shape``); in a graph with no
    channel op (``onnx_layout.channel_nodes``) every copied dim may stay a 0.
    """
    from onnx import numpy_helper

    computed = [n for n in model.graph.node if n.op_type == "Reshape" and len(n.input) > 1 and _const_value(model, n.input[1]) is None]
    if not computed:
        return 0  # no computed target: no shape inference
    shapes = _symbolic_shapes(model)
    count, layout_free = 0, not channel_nodes(model)
    for node in computed:
        items = _shape_items(model, node.input[1], shapes)
        data = shapes.get(node.input[0])
        allowzero = next((a.i for a in node.attribute if a.name == "allowzero"), 0)
        if items is None or data is None or (allowzero and any(isinstance(i, int) and i == 0 for i in items)):
            continue  # a literal 0 in an allowzero target is a 0-sized dim; dims read from Shape are copies
        target, unknown = [], []
        for pos, item in enumerate(items):
            if isinstance(item, int):
                target.append(item)
                continue
            _, tensor, axis = item
            dim = (shapes.get(tensor) or [None] * (axis + 1))[axis]
            same_dim = pos < len(data) and (tensor == node.input[0] and axis == pos or isinstance(dim, str) and dim == data[pos])
            if isinstance(dim, int):
                target.append(dim)
            elif same_dim:
                target.append(0)
            else:
                unknown.append(pos)
                target.append(-1)
        if len(unknown) > 1 or (unknown and target.count(-1) > 1):
            continue
        name = (node.name or node.output[0]) + "/static_shape"
        if layout_free and 0 in target and -1 not in target:
            # No op needs channels-last: onnx2tf keeps every tensor in the ONNX order, so each
            # copied dim is read from the right axis (BERT's view to [B, S, heads, 8]).
            model.graph.initializer.append(numpy_helper.from_array(np.array(target, np.int64), name))
        elif 0 in target[1:] or (target[0] == 0 and not all(isinstance(d, int) for d in data[1:])):
            if 0 in target[1:]:
                continue  # a copied dynamic dim after the batch: onnx2tf reads it from the NHWC tensor
            _batch_from_shape(model, node, target, name)
        else:
            model.graph.initializer.append(numpy_helper.from_array(np.array(target, np.int64), name))
        node.input[1] = name
        for attr in [a for a in node.attribute if a.name == "allowzero"]:
            node.attribute.remove(attr)  # its 0s now copy the input's dim, as the Shape they replace did
        count += 1
    return count


def _batch_from_shape(model, node, target: list, name: str) -> None:
    """Write ``name = Concat(Gather(Shape(x), [0]), target[1:])``: the batch read at run time.

    onnx2tf replaces every symbolic output dim of a Reshape whose target holds a 0 by
    the dim at the same index of its (NHWC) input: right for the batch, wrong for a
    dynamic height*width ([N, C, H*W] became [N, C, W]). Only the batch is read so.
    """
    from onnx import helper, numpy_helper

    shape, index, batch, tail = name + "/input_shape", name + "/zero", name + "/batch", name + "/tail"
    model.graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), index))
    model.graph.initializer.append(numpy_helper.from_array(np.array(target[1:], np.int64), tail))
    at = list(model.graph.node).index(node)
    for k, new in enumerate([helper.make_node("Shape", [node.input[0]], [shape], name=shape),
                             helper.make_node("Gather", [shape, index], [batch], name=batch, axis=0),
                             helper.make_node("Concat", [batch, tail], [name], name=name, axis=0)]):
        model.graph.node.insert(at + k, new)


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


PASSES = [upgrade_old_opset, inline_constant_ifs, layer_norm_keeping_rank, expand_functions, reversing_slice_to_gather, explicit_kernel_shape,
          sanitize_node_names, expand_gelu, split_multi_axis_unsqueeze, constants_to_initializers, resize_to_axis_maps, explicit_reduce_axes,
          explicit_pre13_softmax, unflatten_linear_layers, static_reshape_targets, squeeze_pooled_flatten, lift_batch_moving_transposes,
          reshape_scalar_inputs, matching_pow_types, int_bool_reductions, one_sided_isinf, broadcasting_sum_to_adds, truncated_fmod,
          unbounded_clip_to_identity, remove_dead_nodes]


def run_passes(model, disabled=()):
    """Run ``PASSES`` in order on ``model`` (in place), except those named in ``disabled``;
    return it and what each changed."""
    return model, run_in_order(PASSES, model, disabled, kind="ONNX")
