"""ONNX passes for transformer encoders exported by torch's dynamo exporter (BERT-style, ``.pt2``).

Example:
    >>> expand_gelu(model)     # Gelu (opset 20) -> x * 0.5 * (1 + Erf(x / sqrt(2)))
    2
"""

from __future__ import annotations

import numpy as np

from converter.sources.onnx_graph_query import const_value, opset_of, symbolic_shapes


def expand_gelu(model) -> int:
    """Spell ONNX ``Gelu`` (opset 20) out in ``Erf`` (or ``Tanh``) and arithmetic.

    onnx2tf turns ``Gelu`` into ``tf.nn.gelu``, which computes ``erfc``, an op
    TF.js 4.22 lacks (tensorflowjs refuses the model: "Unsupported Ops ... Erfc");
    ``Erf`` converts::

        Before::  y = Gelu(x)                         (approximate="none")
        After::   y = Mul(Mul(x, 0.5), Add(Erf(Div(x, sqrt(2))), 1))

        Before::  y = Gelu(x, approximate="tanh")
        After::   y = Mul(Mul(x, 0.5), Add(Tanh(Mul(Add(x, Mul(0.044715, x^3)), sqrt(2/pi))), 1))

    Returns the number of ``Gelu`` nodes replaced (main graph only).
    """
    from onnx import helper, numpy_helper

    count = 0
    for node in list(model.graph.node):
        if node.op_type != "Gelu" or node.domain not in ("", "ai.onnx"):
            continue
        approximate = next((a.s.decode() for a in node.attribute if a.name == "approximate"), "none")
        base, x = node.name or node.output[0], node.input[0]

        def const(suffix, value):
            model.graph.initializer.append(numpy_helper.from_array(np.array(value, np.float32), f"{base}/{suffix}"))
            return f"{base}/{suffix}"

        def op(kind, inputs, suffix):
            new.append(helper.make_node(kind, inputs, [f"{base}/{suffix}"], name=f"{base}/{suffix}"))
            return f"{base}/{suffix}"

        new = []
        if approximate == "tanh":
            cube = op("Mul", [op("Mul", [x, x], "x2"), x], "x3")
            inner = op("Add", [x, op("Mul", [cube, const("c", 0.044715)], "cx3")], "inner")
            core = op("Tanh", [op("Mul", [inner, const("sqrt_2_over_pi", np.sqrt(2 / np.pi))], "scaled")], "tanh")
        else:
            core = op("Erf", [op("Div", [x, const("sqrt2", np.sqrt(2.0))], "scaled")], "erf")
        half = op("Mul", [x, const("half", 0.5)], "half_x")
        new.append(helper.make_node("Mul", [half, op("Add", [core, const("one", 1.0)], "one_plus")], list(node.output), name=base))
        at = list(model.graph.node).index(node)
        model.graph.node.remove(node)
        for k, n in enumerate(new):
            model.graph.node.insert(at + k, n)
        count += 1
    return count


def split_multi_axis_unsqueeze(model) -> int:
    """Split an ``Unsqueeze`` of several axes on a tensor with 2+ dynamic dims into one per axis.

    onnx2tf writes a multi-axis ``Unsqueeze`` as ``tf.reshape`` to the output shape, which
    then holds a ``-1`` per dynamic dim; TensorFlow refuses that at run time ("Only one
    input size may be -1, not both 0 and 3"). A single-axis one becomes ``tf.expand_dims``.
    BERT's attention mask ``mask[:, None, None, :]`` on ``[batch, seq]`` is the case::

        Before::  m4 = Unsqueeze(mask [B, S], axes=[1, 2])                    [B, 1, 1, S]
        After::   m3 = Unsqueeze(mask, axes=[1]);  m4 = Unsqueeze(m3, axes=[2])

    Returns the number of ``Unsqueeze`` nodes split (main graph only).
    """
    from onnx import helper, numpy_helper

    shapes, opset = symbolic_shapes(model), opset_of(model)
    count = 0
    for node in list(model.graph.node):
        if node.op_type != "Unsqueeze" or node.domain not in ("", "ai.onnx"):
            continue
        axes = const_value(model, node.input[1]) if len(node.input) > 1 else next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
        shape = shapes.get(node.input[0])
        if axes is None or shape is None or len(np.asarray(axes).ravel()) < 2 or sum(not isinstance(d, int) for d in shape) < 2:
            continue
        rank = len(shape) + len(np.asarray(axes).ravel())
        axes = sorted(int(a) + rank if a < 0 else int(a) for a in np.asarray(axes).ravel())
        base, current, new = node.name or node.output[0], node.input[0], []
        for k, axis in enumerate(axes):
            out = node.output[0] if k == len(axes) - 1 else f"{base}/axis{axis}"
            if opset >= 13:
                name = f"{base}/axes{axis}"
                model.graph.initializer.append(numpy_helper.from_array(np.array([axis], np.int64), name))
                new.append(helper.make_node("Unsqueeze", [current, name], [out], name=out if k < len(axes) - 1 else base))
            else:
                new.append(helper.make_node("Unsqueeze", [current], [out], name=out if k < len(axes) - 1 else base, axes=[axis]))
            current = out
        at = list(model.graph.node).index(node)
        model.graph.node.remove(node)
        for k, n in enumerate(new):
            model.graph.node.insert(at + k, n)
        count += 1
    return count

