"""Rewrites of single ONNX ops onnx2tf converts with the wrong meaning, into ops it gets right.

Example:
    >>> reversing_slice_to_gather(model)   # Slice(steps=[-1]) -> Gather(indices=[n-1, …, 0])
    1
"""

from __future__ import annotations

import numpy as np

from converter.sources.onnx_graph_query import opset_of, replace_node, shapes as inferred_shapes


def _static_shapes(model) -> dict[str, list]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a graph inference rejects: no shapes, no rewrite
        return {}
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def slice_indices(dim: int, start: int, end: int, step: int) -> list[int]:
    """The indices ONNX ``Slice`` takes along one axis of size ``dim`` (its clamping rules).

    Example:
        >>> slice_indices(4, -1, -5, -1)
        [3, 2, 1, 0]
    """
    start, end = start + dim if start < 0 else start, end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return list(range(start, end, step))


def _constant_ints(inits: dict, name: str):
    from onnx import numpy_helper

    return [int(v) for v in numpy_helper.to_array(inits[name]).ravel()] if name in inits else None


def _slice_plan(node, inits: dict, shape) -> list[tuple[int, list[int]]] | None:
    """``[(axis, indices)]`` of a constant Slice with a negative step on known dims, else ``None``."""
    if node.op_type != "Slice" or len(node.input) < 3 or not shape or None in shape:
        return None
    starts, ends = _constant_ints(inits, node.input[1]), _constant_ints(inits, node.input[2])
    axes = _constant_ints(inits, node.input[3]) if len(node.input) > 3 and node.input[3] else list(range(len(starts or [])))
    steps = _constant_ints(inits, node.input[4]) if len(node.input) > 4 and node.input[4] else [1] * len(starts or [])
    if None in (starts, ends, axes, steps) or min(steps) > 0:
        return None
    plan = [(a % len(shape), slice_indices(shape[a % len(shape)], s, e, st)) for s, e, a, st in zip(starts, ends, axes, steps)]
    return None if any(not idx for _, idx in plan) else plan


def reversing_slice_to_gather(model) -> int:
    """Turn a ``Slice`` with a negative step into ``Gather``s of the indices it takes.

    Before::  r = Slice(x [2, 3, 4], starts=[-1], ends=[-9223372036854775807], axes=[1], steps=[-1])
    After::   r = Gather(x, indices=[2, 1, 0], axis=1)

    onnx2tf 1.28 gets reversed slices wrong. onnxsim writes them itself: it turns
    ``ArgMax(select_last_index=1)`` into ``Sub(n - 1, ArgMax(Slice(x, step -1)))``,
    and TensorFlow then returned the first index, not the last (8 of 16 ArgMax/ArgMin
    node tests). Left alone where a bound is not constant or a dim is unknown.
    """
    from onnx import helper, numpy_helper

    if not any(n.op_type == "Slice" for n in model.graph.node):
        return 0
    inits = {i.name: i for i in model.graph.initializer}
    shapes = None
    count = 0
    for node in [n for n in model.graph.node if n.op_type == "Slice" and n.input[1] in inits]:
        shapes = _static_shapes(model) if shapes is None else shapes
        plan = _slice_plan(node, inits, shapes.get(node.input[0]))
        if plan is None:
            continue
        base, source, new = node.name or node.output[0], node.input[0], []
        for k, (axis, indices) in enumerate(plan):
            name = f"{base}/gather_{k}"
            model.graph.initializer.append(numpy_helper.from_array(np.array(indices, np.int64), f"{name}/indices"))
            out = node.output[0] if k == len(plan) - 1 else f"{name}/out"
            new.append(helper.make_node("Gather", [source, f"{name}/indices"], [out], name=name, axis=axis))
            source = out
        replace_node(model, node, new)
        count += 1
    return count


def explicit_kernel_shape(model) -> int:
    """Write ``kernel_shape`` on a ``ConvTranspose`` that leaves it out (it is optional in ONNX).

    Before::  y = ConvTranspose(x, W [1, 2, 3, 3])
    After::   y = ConvTranspose(x, W [1, 2, 3, 3], kernel_shape=[3, 3])

    onnx2tf 1.28 reads the kernel's rank from the attribute and fails without it
    ("axes don't match array"): 10 of 11 ConvTranspose node tests.
    """
    from onnx import helper

    inits = {i.name: i for i in model.graph.initializer}
    count = 0
    for node in model.graph.node:
        if node.op_type in ("ConvTranspose", "Conv") and len(node.input) > 1 and node.input[1] in inits:
            if not any(a.name == "kernel_shape" for a in node.attribute):
                node.attribute.append(helper.make_attribute("kernel_shape", list(inits[node.input[1]].dims[2:])))
                count += 1
    return count


def explicit_reduce_axes(model) -> int:
    """Spell out the axes of a Reduce* whose ``axes`` input is an empty constant (opset 18).

    ONNX reads empty axes as "every axis" (or, with ``noop_with_empty_axes=1``, as no
    reduction at all); onnx2tf reads them as axis 0 and fails, or returns the input::

        Before::  y = ReduceSum(x [3, 2, 2], axes=[])                  y = ReduceSum(x, axes=[], noop_with_empty_axes=1)
        After::   y = ReduceSum(x, axes=[0, 1, 2])   (y [1, 1, 1])       y = Identity(x)

    Returns:
        How many nodes were rewritten.
    """
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    shapes = None
    done = 0
    for index, node in enumerate(model.graph.node):
        if not node.op_type.startswith("Reduce") or len(node.input) < 2 or node.input[1] not in inits:
            continue
        if numpy_helper.to_array(inits[node.input[1]]).size:
            continue
        noop = any(a.name == "noop_with_empty_axes" and a.i for a in node.attribute)
        if noop:
            model.graph.node[index].CopyFrom(helper.make_node("Identity", [node.input[0]], list(node.output), name=node.name))
        else:
            shapes = _static_shapes(model) if shapes is None else shapes
            rank = len(shapes.get(node.input[0]) or [])
            if not rank:
                continue
            name = f"{node.name or node.op_type}/all_axes"
            model.graph.initializer.append(numpy_helper.from_array(np.arange(rank, dtype=np.int64), name))
            node.input[1] = name
        done += 1
    return done


def _inverse(perm: list[int]) -> list[int]:
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return inverse


def lift_batch_moving_transposes(model) -> int:
    """Spell a ``Transpose`` that moves axis 0 as transposes that keep axis 0, one rank up.

    Before::  seq = Transpose(act [batch, 8, frames], perm=[2, 0, 1])   -> [frames, batch, 8]
    After::   a = Transpose(act, perm=[0, 2, 1])                         -> [batch, frames, 8]
              u = Unsqueeze(a, [0]);  t = Transpose(u, perm=[0, 2, 1, 3]);  seq = Squeeze(t, [0])

    onnx2tf maps a perm that keeps axis 0 onto its NWC/NHWC tensors exactly, but for
    one that moves axis 0 it guesses the perm by matching the output's dims against
    its tensor's, and with two unknown dims every guess is the identity: a streaming
    LSTM with a dynamic batch and time got ``[batch, frames, 8]`` as ``[frames, batch, 8]``
    (``out`` [1, 7, 8] for [7, 1, 8]; a batch of 2 failed inside its ``While``). The first
    Transpose puts the channels last (an identity on onnx2tf's channel-last tensor),
    after which its tensor has the ONNX order and the lifted perm keeps axis 0.
    Left alone where at most one output dim is unknown (the guess is then right) or
    the rank is below 3.
    """
    candidates = [n for n in model.graph.node if n.op_type == "Transpose" and _perm(n) and _perm(n)[0] != 0 and len(_perm(n)) >= 3]
    if not candidates:
        return 0
    shapes = inferred_shapes(model)
    count = 0
    for node in candidates:
        perm, out = _perm(node), shapes.get(node.output[0])
        if out is not None and out.count(None) < 2:
            continue
        new = _lifted_transpose(model, node.name or node.output[0], node.input[0], node.output[0], perm)
        replace_node(model, node, new)
        count += 1
    return count


def _lifted_transpose(model, base: str, source: str, output: str, perm: list[int]) -> list:
    """The four nodes of ``lift_batch_moving_transposes``: channels last, Unsqueeze(0), the lifted perm, Squeeze(0)."""
    from onnx import helper, numpy_helper

    rank = len(perm)
    channels_last = [0] + list(range(2, rank)) + [1]
    lifted = [0] + [1 + p for p in (_inverse(channels_last)[q] for q in perm)]
    names = [f"{base}/channels_last", f"{base}/lift", f"{base}/lifted"]
    if opset_of(model) < 13:
        unsqueeze = helper.make_node("Unsqueeze", names[:1], names[1:2], name=names[1], axes=[0])
        squeeze = helper.make_node("Squeeze", names[2:], [output], name=f"{base}/unlift", axes=[0])
    else:
        axis0 = f"{base}/axis0"
        model.graph.initializer.append(numpy_helper.from_array(np.array([0], np.int64), axis0))
        unsqueeze = helper.make_node("Unsqueeze", [names[0], axis0], names[1:2], name=names[1])
        squeeze = helper.make_node("Squeeze", [names[2], axis0], [output], name=f"{base}/unlift")
    return [helper.make_node("Transpose", [source], names[:1], name=names[0], perm=channels_last), unsqueeze,
            helper.make_node("Transpose", names[1:2], names[2:], name=names[2], perm=lifted), squeeze]


def _perm(node) -> list[int] | None:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), None)


def reshape_scalar_inputs(model) -> int:
    """Give each rank-0 graph input a ``Reshape(x, [])`` that its consumers read instead.

    Before::  y = Range(start [], limit [], delta [])
    After::   s = Reshape(start, shape=[]);  …;  y = Range(s, l, d)

    onnx2tf makes a Keras ``Input`` of a scalar, whose placeholder is ``[?]``, and ops
    that need a scalar refuse it: ``tf.range`` raised "Shape must be rank 0 but is
    rank 1" (Range, and the HannWindow/HammingWindow/BlackmanWindow bodies).

    Returns:
        How many inputs were reshaped.
    """
    from onnx import helper, numpy_helper

    inits = {i.name for i in model.graph.initializer}
    scalars = [i.name for i in model.graph.input if i.name not in inits and i.type.HasField("tensor_type")
               and i.type.tensor_type.HasField("shape") and not i.type.tensor_type.shape.dim]
    if not scalars:
        return 0
    empty = "scalar_inputs/shape"
    model.graph.initializer.append(numpy_helper.from_array(np.zeros([0], np.int64), empty))
    for k, name in enumerate(scalars):
        inner = f"{name}/scalar"
        for node in model.graph.node:
            node.input[:] = [inner if i == name else i for i in node.input]
        model.graph.node.insert(k, helper.make_node("Reshape", [name, empty], [inner], name=f"{name}/reshape_scalar"))
    return len(scalars)


def broadcasting_sum_to_adds(model) -> int:
    """Spell a ``Sum`` of differently shaped inputs as a chain of ``Add``s.

    Before::  y = Sum(half [], x [3, 4, 5])
    After::   y = Add(half, x)

    ``Sum`` broadcasts like ``Add``; onnx2tf emits ``tf.math.add_n``, which needs equal
    shapes (the 4 expanded Gelu node tests). Sums of equal shapes stay ``add_n``.

    Returns:
        How many nodes were rewritten.
    """
    from onnx import helper

    nodes = [n for n in model.graph.node if n.op_type == "Sum" and len(n.input) >= 2]
    known = inferred_shapes(model) if nodes else {}
    count = 0
    for node in nodes:
        seen = [known.get(i) for i in node.input]
        if None not in seen and all(s == seen[0] and None not in s for s in seen):
            continue
        name, total, new = node.name or node.output[0], node.input[0], []
        for k, term in enumerate(node.input[1:], start=1):
            out = node.output[0] if k == len(node.input) - 1 else f"{name}/partial_{k}"
            new.append(helper.make_node("Add", [total, term], [out], name=f"{name}/add_{k}"))
            total = out
        replace_node(model, node, new)
        count += 1
    return count


def truncated_fmod(model) -> int:
    """Spell ``Mod(fmod=1)`` (C's fmod: the sign of the dividend) as a mod of magnitudes signed back.

    Before::  z = Mod(a, b, fmod=1)
    After::   z = Mul(Mod(Abs(a), Abs(b), fmod=1), Sign(a))

    onnx2tf emits ``tf.math.mod``, a floor mod (the divisor's sign): wrong for mixed
    signs (test_mod_mixed_sign_float*, test_mod_int64_fmod: off by up to 3.4). On
    magnitudes both agree, and the dividend's sign is then fmod's.

    Returns:
        How many nodes were rewritten.
    """
    from onnx import helper

    count = 0
    for node in [n for n in model.graph.node if n.op_type == "Mod" and any(a.name == "fmod" and a.i for a in n.attribute)]:
        name = node.name or node.output[0]
        a, b = node.input[0], node.input[1]
        new = [helper.make_node("Abs", [a], [f"{name}/abs_a"], name=f"{name}/abs_a"),
               helper.make_node("Abs", [b], [f"{name}/abs_b"], name=f"{name}/abs_b"),
               helper.make_node("Mod", [f"{name}/abs_a", f"{name}/abs_b"], [f"{name}/magnitude"], name=name, fmod=1),
               helper.make_node("Sign", [a], [f"{name}/sign"], name=f"{name}/sign"),
               helper.make_node("Mul", [f"{name}/magnitude", f"{name}/sign"], list(node.output), name=f"{name}/signed")]
        replace_node(model, node, new)
        count += 1
    return count


def unbounded_clip_to_identity(model) -> int:
    """Turn a ``Clip`` with neither bound (no inputs, no attributes) into ``Identity``.

    Before::  y = Clip(x)
    After::   y = Identity(x)

    onnx2tf fails on the missing bounds (test_clip_default_inbounds, test_clip_default_int8_inbounds).

    Returns:
        How many nodes were rewritten.
    """
    from onnx import helper

    count = 0
    for index, node in enumerate(model.graph.node):
        bounds = [i for i in node.input[1:] if i] + [a.name for a in node.attribute if a.name in ("min", "max")]
        if node.op_type == "Clip" and not bounds:
            model.graph.node[index].CopyFrom(helper.make_node("Identity", [node.input[0]], list(node.output), name=node.name))
            count += 1
    return count
