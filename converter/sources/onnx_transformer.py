"""ONNX passes for transformer encoders exported by torch's dynamo exporter (BERT-style, ``.pt2``).

Example:
    >>> expand_gelu(model)     # Gelu (opset 20) -> x * 0.5 * (1 + Erf(x / sqrt(2)))
    2
"""

from __future__ import annotations

import numpy as np

from converter.sources.onnx_graph_query import const_value, elem_types, has_op, opset_of, producer, replace_node, symbolic_shapes
from converter.sources.onnx_layout import channel_nodes


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
        replace_node(model, node, new)
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

    candidates = []  # (node, axes) of multi-axis Unsqueezes; none: no shape inference
    for node in list(model.graph.node):
        if node.op_type != "Unsqueeze" or node.domain not in ("", "ai.onnx"):
            continue
        axes = const_value(model, node.input[1]) if len(node.input) > 1 else next((list(a.ints) for a in node.attribute if a.name == "axes"), None)
        if axes is not None and len(np.asarray(axes).ravel()) >= 2:
            candidates.append((node, axes))
    if not candidates:
        return 0
    shapes, opset = symbolic_shapes(model), opset_of(model)
    count = 0
    for node, axes in candidates:
        shape = shapes.get(node.input[0])
        if shape is None or sum(not isinstance(d, int) for d in shape) < 2:
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
        replace_node(model, node, new)
        count += 1
    return count


def layer_norm_keeping_rank(model) -> int:
    """Write a float32 ``LayerNormalization`` as reductions over its trailing axes, keeping the rank.

    The standard's function body (what ``expand_functions`` writes) flattens ``x`` to 2-D and
    reshapes back to ``Shape(x)``; with a dynamic batch *and* sequence onnx2tf loses the
    layout there (``Flatten`` became ``[B, S*32]``; the pooler's ``Gather(axis=1)`` after the
    ``Reshape`` ran on the hidden axis, "In[0]: [2,16], In[1]: [32,32]"). Reductions that
    keep the dims need no reshape::

        Before::  y = LayerNormalization(x [B, S, 32], scale, bias, axis=-1, epsilon=e)
        After::   m = ReduceMean(x, [2], keepdims=1);  d = Sub(x, m)
                  s = Sqrt(Add(ReduceMean(Mul(d, d), [2], keepdims=1), e))
                  y = Add(Mul(Div(d, s), scale), bias)      (Mean = m, InvStdDev = Reciprocal(s))

    Left to ``expand_functions``: inputs of unknown rank, or not float32 (``stash_type``
    then asks for a cast the body spells out). Returns the number of nodes replaced.
    """
    from onnx import TensorProto, helper, numpy_helper

    if not has_op(model, "LayerNormalization"):
        return 0
    shapes, types, opset = symbolic_shapes(model), elem_types(model), opset_of(model)
    count = 0
    for node in list(model.graph.node):
        if node.op_type != "LayerNormalization" or node.domain not in ("", "ai.onnx"):
            continue
        shape = shapes.get(node.input[0])
        if shape is None or types.get(node.input[0]) != TensorProto.FLOAT:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        axis = int(attrs.get("axis", -1))
        axes = list(range(axis + len(shape) if axis < 0 else axis, len(shape)))
        base, x = node.name or node.output[0], node.input[0]
        new, outputs = [], list(node.output) + [""] * (3 - len(node.output))

        def op(kind, inputs, suffix, out=None, **kw):
            new.append(helper.make_node(kind, inputs, [out or f"{base}/{suffix}"], name=out or f"{base}/{suffix}", **kw))
            return out or f"{base}/{suffix}"

        def mean(t, suffix, out=None):
            if opset >= 18:
                return op("ReduceMean", [t, f"{base}/axes"], suffix, out, keepdims=1)
            return op("ReduceMean", [t], suffix, out, axes=axes, keepdims=1)

        model.graph.initializer.extend([numpy_helper.from_array(np.array(axes, np.int64), f"{base}/axes"),
                                        numpy_helper.from_array(np.array(attrs.get("epsilon", 1e-5), np.float32), f"{base}/epsilon")])
        m = mean(x, "mean", outputs[1] or None)
        d = op("Sub", [x, m], "deviation")
        s = op("Sqrt", [op("Add", [mean(op("Mul", [d, d], "square"), "variance"), f"{base}/epsilon"], "variance_eps")], "std")
        has_bias = len(node.input) > 2 and node.input[2]
        scaled = op("Mul", [op("Div", [d, s], "normalized"), node.input[1]], "scaled", None if has_bias else outputs[0])
        if has_bias:
            op("Add", [scaled, node.input[2]], "biased", outputs[0])
        if outputs[2]:
            op("Reciprocal", [s], "inv_std", outputs[2])
        replace_node(model, node, new)
        count += 1
    return count


def _flattened_rows(model, name: str, shapes: dict):
    """``(t, keep)`` when ``name = Reshape(t, [-1, K])`` flattens a rank >= 3 ``t`` to rows of K, else ``None``.

    ``keep`` is how many leading dims of ``t`` the rows run over (its trailing dims multiply to K).
    """
    node = producer(model, name)
    if node is None or node.op_type != "Reshape":
        return None
    target, source = const_value(model, node.input[1]), shapes.get(node.input[0])
    if target is None or source is None or len(source) < 3:
        return None
    target = [int(v) for v in np.asarray(target).ravel()]
    for keep in range(len(source) - 1, 1, -1):
        tail = source[keep:]
        if all(isinstance(d, int) for d in tail) and target == [-1, int(np.prod(tail))]:
            return node.input[0], keep
    return None


def unflatten_linear_layers(model) -> int:
    """Apply a ``Gemm`` on rows of a flattened ``[B, S, K]`` tensor to the tensor itself, as ``MatMul`` + ``Add``.

    torch's dynamo exporter writes ``nn.Linear`` on ``[B, S, K]`` as flatten, Gemm, and a
    reshape back to a target computed from ``Shape``; with a dynamic batch *and* sequence
    onnx2tf cannot see that target's static dims (``[B, S, 4, 8]`` came out ``[?, ?, ?, ?]``),
    takes the tensor for channels-first and transposes it, and the attention ``Softmax``
    then runs over the wrong axis. Without the flatten the reshape target becomes
    constant (``static_reshape_targets``)::

        Before::  r = Reshape(x [B, S, 32], [-1, 32]);  g = Gemm(r, W, b)  [B*S, 32]
                  y = Reshape(g, Concat(Shape(x)[0:2], [4, 8]))           [B, S, 4, 8]
        After::   g = Add(MatMul(x, W), b)  [B, S, 32];  y = Reshape(g, Concat(...))

    Only in graphs with no channel op (``onnx_layout.channel_nodes``), where every consumer
    of the Gemm is a ``Reshape`` without a literal 0 in its target (a 0 copies an input dim,
    which the rank change would alter), ``alpha = beta = 1``, ``transA = 0``, and ``W`` and
    a 1-D ``b`` are initializers. Returns the number of
    Gemm nodes rewritten (the flattening Reshape is left to ``remove_dead_nodes``).
    """
    from onnx import helper, numpy_helper

    if channel_nodes(model):
        return 0  # onnx2tf's tensors may be channels-last there: a MatMul on one contracts the wrong axis
    if not has_op(model, "Gemm"):
        return 0
    shapes = symbolic_shapes(model)
    inits = {i.name: i for i in model.graph.initializer}
    count = 0
    for node in list(model.graph.node):
        if node.op_type != "Gemm" or node.domain not in ("", "ai.onnx") or len(node.input) < 2 or node.input[1] not in inits:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        source = _flattened_rows(model, node.input[0], shapes)
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        users = [n for n in model.graph.node if node.output[0] in n.input]
        if (source is None or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0 or attrs.get("transA", 0)
                or (bias is not None and (bias not in inits or len(inits[bias].dims) != 1))
                or not users or any(u.op_type != "Reshape" or u.input[0] != node.output[0] or _has_literal_zero(model, u) for u in users)
                or node.output[0] in {o.name for o in model.graph.output}):
            continue
        base, weight = node.name or node.output[0], node.input[1]
        (source, keep), new = source, []
        rank = len(shapes[source])
        if keep < rank - 1:  # [B, S, 4, 8] -> [B, S, 32] first; the 0s copy B and S
            model.graph.initializer.append(numpy_helper.from_array(np.array([0] * keep + [int(np.prod(shapes[source][keep:]))], np.int64), f"{base}/rows_shape"))
            new.append(helper.make_node("Reshape", [source, f"{base}/rows_shape"], [f"{base}/rows"], name=f"{base}/rows"))
            source = f"{base}/rows"
        if attrs.get("transB", 0):
            weight = f"{base}/weight_t"
            model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(numpy_helper.to_array(inits[node.input[1]]).T), weight))
        product = node.output[0] if bias is None else f"{base}/matmul"
        new.append(helper.make_node("MatMul", [source, weight], [product], name=f"{base}/matmul"))
        if bias is not None:
            new.append(helper.make_node("Add", [product, bias], [node.output[0]], name=base))
        replace_node(model, node, new)
        stale = [v for v in model.graph.value_info if v.name == node.output[0]]  # it said [B*S, N]
        for v in stale:
            model.graph.value_info.remove(v)
        count += 1
    return count


def _has_literal_zero(model, reshape) -> bool:
    """Could ``reshape``'s target hold a 0 (copy the input's dim)? True for a constant 0 in it or in a Concat of it."""
    target = const_value(model, reshape.input[1])
    if target is not None:
        return 0 in [int(v) for v in np.asarray(target).ravel()]
    concat = producer(model, reshape.input[1])
    if concat is None or concat.op_type != "Concat":
        return True
    parts = [const_value(model, i) for i in concat.input]
    return any(p is not None and 0 in [int(v) for v in np.asarray(p).ravel()] for p in parts)
