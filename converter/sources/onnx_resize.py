"""ONNX ``Resize`` as one exact map per axis (Gather or MatMul), where onnx2tf's own Resize is wrong.

onnx2tf turns ``Resize`` into ``tf.image.resize``, which has no cubic with ONNX's
coefficient ``A``, no ``align_corners`` / ``half_pixel_symmetric`` / ``tf_crop_and_resize``
coordinates, no ``nearest_mode`` other than its own, no ``keep_aspect_ratio_policy``
and no ``axes``: 34 of the 39 ONNX node tests of ``Resize`` failed. ONNX's Resize is
separable: along each resized axis the output is ``M @ x (+ b)`` with ``M`` of shape
``[out, in]``. ``M`` is computed by ONNX's own reference implementation
(``onnx.reference.ops.op_resize``) applied to an identity matrix, so every mode and
attribute means exactly what ONNX says. Nearest maps (one 1 per row) become a
``Gather``; the others a ``MatMul`` (and an ``Add`` for ``extrapolation_value``).

Only Resizes with a static input shape and constant ``roi``/``scales``/``sizes`` are
rewritten, and not those onnx2tf already converts exactly (nearest or linear integer
upsampling of H and W with half-pixel or asymmetric coordinates: the FPN/YOLO case),
so common models keep onnx2tf's one ``ResizeNearestNeighbor``.

Example:
    >>> resize_axis_maps(node, [1, 1, 4, 4], roi=None, scales=[1, 1, 0.6, 0.6], sizes=None)
    [(2, array([[...]]), None), (3, array([[...]]), None)]
    >>> resize_to_axis_maps(model)
    1
"""

from __future__ import annotations

import math

import numpy as np

from converter.sources.onnx_graph_query import const_value, opset_of

# Attribute defaults of Resize-19 (earlier opsets from 11 on have a subset of them).
_DEFAULTS = {"mode": "nearest", "coordinate_transformation_mode": "half_pixel", "nearest_mode": "round_prefer_floor",
             "cubic_coeff_a": -0.75, "exclude_outside": 0, "extrapolation_value": 0.0, "antialias": 0,
             "keep_aspect_ratio_policy": "stretch", "axes": None}


def resize_attributes(node) -> dict:
    """The node's attributes, ONNX's defaults filled in, strings decoded."""
    from onnx import helper

    attrs = dict(_DEFAULTS)
    for a in node.attribute:
        value = helper.get_attribute_value(a)
        attrs[a.name] = value.decode() if isinstance(value, bytes) else value
    return attrs


def _coefficients(attrs: dict):
    from onnx.reference.ops import op_resize as ref

    mode = attrs["mode"]
    if mode == "nearest":
        return lambda ratio, scale: ref._nearest_coeffs(ratio, mode=attrs["nearest_mode"])
    if mode == "cubic":
        fn = ref._cubic_coeffs_antialias if attrs["antialias"] else ref._cubic_coeffs
        return lambda ratio, scale: fn(ratio, scale, A=attrs["cubic_coeff_a"])
    if mode == "linear":
        return ref._linear_coeffs_antialias if attrs["antialias"] else ref._linear_coeffs
    raise ValueError(f"Resize mode {mode!r} is not one of nearest, linear, cubic")


def _scales_and_sizes(shape: list[int], attrs: dict, scales, sizes) -> tuple[list[int], list[float], list[int]]:
    """(resized axes, per-axis scale, per-axis output size) as ``_interpolate_nd`` computes them."""
    r = len(shape)
    axes = [a % r for a in attrs["axes"]] if attrs["axes"] is not None else list(range(r))
    if scales is not None:
        scale = [float(s) for s in scales]
        return axes, scale, [int(s * shape[a]) for a, s in zip(axes, scale)]
    scale = [sizes[i] / shape[a] for i, a in enumerate(axes)]
    out = [int(s) for s in sizes]
    policy = attrs["keep_aspect_ratio_policy"]
    if policy != "stretch":
        one = min(scale) if policy == "not_larger" else max(scale)
        scale = [one] * len(axes)
        out = [int(one * shape[a] + 0.5) for a in axes]
    return axes, scale, out


def resize_axis_maps(node, shape: list[int], roi=None, scales=None, sizes=None) -> list[tuple[int, np.ndarray, np.ndarray | None]]:
    """``[(axis, M [out, in], bias [out] or None)]`` of a Resize on a tensor of static ``shape``.

    Args:
        node: the ``Resize`` node (its attributes).
        shape: the input's dims, all known.
        roi: the ``roi`` values (``tf_crop_and_resize``), or ``None``.
        scales: one scale per resized axis, or ``None`` (then ``sizes``).
        sizes: one output size per resized axis, or ``None``.

    Returns:
        One entry per axis the Resize changes, ascending; unchanged axes are left out.

    Example:
        >>> [(a, m.shape) for a, m, _ in resize_axis_maps(node, [1, 1, 2, 2], scales=[1, 1, 2, 3])]
        [(2, (4, 2)), (3, (6, 2))]
    """
    from onnx.reference.ops.op_resize import _interpolate_1d_along_axis

    attrs = resize_attributes(node)
    axes, scale, out = _scales_and_sizes(shape, attrs, scales, sizes)
    if roi is not None and len(roi) == 0:
        roi = None
    coeffs = _coefficients(attrs)
    maps = []
    for i, axis in sorted(enumerate(axes), key=lambda p: p[1]):
        axis_roi = None if roi is None else [float(roi[i]), float(roi[len(axes) + i])]
        unit_roi = axis_roi is None or (math.isclose(axis_roi[0], 0.0) and math.isclose(axis_roi[1], 1.0))
        if math.isclose(scale[i], 1.0) and out[i] == shape[axis] and unit_roi:
            continue
        common = {"coordinate_transformation_mode": attrs["coordinate_transformation_mode"],
                  "exclude_outside": bool(attrs["exclude_outside"]), "roi": axis_roi}
        matrix = _interpolate_1d_along_axis(np.eye(shape[axis]), 0, scale[i], out[i], coeffs, extrapolation_value=0.0, **common)
        outside = _interpolate_1d_along_axis(np.zeros((shape[axis], 1)), 0, scale[i], out[i], coeffs, extrapolation_value=1.0,
                                             **common)[:, 0]
        value = float(attrs["extrapolation_value"])
        bias = outside * value if value and outside.any() else None
        maps.append((axis, matrix, bias))
    return maps


def onnx2tf_resizes_exactly(node, shape: list[int], maps) -> bool:
    """Whether onnx2tf's own Resize gives ONNX's values: nearest/linear integer upsampling of H, W.

    Measured on the node tests (onnx2tf 1.28.8): nearest with half-pixel or asymmetric
    coordinates and floor rounding, and linear half-pixel, pass at integer scales;
    every other mode, fractional scales and downsampling did not.
    """
    attrs = resize_attributes(node)
    if attrs["antialias"] or attrs["keep_aspect_ratio_policy"] != "stretch" or len(shape) != 4:
        return False
    if not maps or any(axis < 2 or bias is not None or m.shape[0] % m.shape[1] for axis, m, bias in maps):
        return False
    ctm, mode = attrs["coordinate_transformation_mode"], attrs["mode"]
    if mode == "nearest":
        return ctm in ("half_pixel", "asymmetric") and attrs["nearest_mode"] in ("round_prefer_floor", "floor")
    return mode == "linear" and ctm in ("half_pixel", "pytorch_half_pixel")


def gather_indices(matrix: np.ndarray) -> np.ndarray | None:
    """The column each row of ``matrix`` takes, if every row is one 1 and zeros (a nearest map); else ``None``.

    Example:
        >>> gather_indices(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))
        array([0, 0, 1])
    """
    picks = matrix.argmax(axis=1)
    one_hot = np.zeros_like(matrix)
    one_hot[np.arange(len(picks)), picks] = 1.0
    return picks.astype(np.int64) if np.array_equal(one_hot, matrix) else None


def _input_value(model, node, k: int):
    if len(node.input) <= k or not node.input[k]:
        return None
    value = const_value(model, node.input[k])
    return None if value is None else (value.ravel() if value.size else None)


def _axis_map_nodes(node, x: str, rank: int, maps, dtype) -> tuple[list, list]:
    """(nodes, initializers) applying ``maps`` to ``x`` in turn; the last node outputs the Resize's output."""
    from onnx import helper, numpy_helper

    nodes, inits, current = [], [], x
    for k, (axis, matrix, bias) in enumerate(maps):
        stem = f"{node.name or 'Resize'}/axis{axis}"
        out = node.output[0] if k == len(maps) - 1 and bias is None else f"{stem}/out"
        picks = gather_indices(matrix)
        if picks is not None:
            inits.append(numpy_helper.from_array(picks, f"{stem}/indices"))
            nodes.append(helper.make_node("Gather", [current, f"{stem}/indices"], [out], name=f"{stem}/gather", axis=axis))
        else:
            nodes += _matmul_along(stem, current, out, axis, rank, matrix.astype(dtype), inits)
        current = out
        if bias is not None:
            out = node.output[0] if k == len(maps) - 1 else f"{stem}/biased"
            inits.append(numpy_helper.from_array(bias.astype(dtype).reshape([-1] + [1] * (rank - axis - 1)), f"{stem}/bias"))
            nodes.append(helper.make_node("Add", [current, f"{stem}/bias"], [out], name=f"{stem}/extrapolate"))
            current = out
    return nodes, inits


def _matmul_along(stem: str, x: str, out: str, axis: int, rank: int, matrix: np.ndarray, inits: list) -> list:
    # M [out, in] on axis r-2: M @ x broadcasts over the leading dims; on the last axis
    # x @ M^T; elsewhere the axis is swapped with the last one and back.
    from onnx import helper, numpy_helper

    if axis == rank - 2:
        inits.append(numpy_helper.from_array(matrix, f"{stem}/matrix"))
        return [helper.make_node("MatMul", [f"{stem}/matrix", x], [out], name=f"{stem}/matmul")]
    inits.append(numpy_helper.from_array(np.ascontiguousarray(matrix.T), f"{stem}/matrix"))
    if axis == rank - 1:
        return [helper.make_node("MatMul", [x, f"{stem}/matrix"], [out], name=f"{stem}/matmul")]
    perm = list(range(rank))
    perm[axis], perm[-1] = perm[-1], perm[axis]
    return [helper.make_node("Transpose", [x], [f"{stem}/moved"], name=f"{stem}/move", perm=perm),
            helper.make_node("MatMul", [f"{stem}/moved", f"{stem}/matrix"], [f"{stem}/mapped"], name=f"{stem}/matmul"),
            helper.make_node("Transpose", [f"{stem}/mapped"], [out], name=f"{stem}/move_back", perm=perm)]


_FLOAT_TYPES = {1: np.float32, 10: np.float16, 11: np.float64}


def resize_to_axis_maps(model) -> int:
    """Replace each Resize onnx2tf gets wrong by one Gather or MatMul per resized axis.

    Before::  Y = Resize(X [1, 1, 4, 4], scales=[1, 1, 0.6, 0.6], mode="cubic")
    After::   t = MatMul(M_h [2, 4], X);  Y = MatMul(t, M_w^T [4, 2])

    Left as they are: an input of unknown dims, non-constant ``roi``/``scales``/``sizes``,
    Resize-10, a non-float input whose map is not a nearest one, and the Resizes
    ``onnx2tf_resizes_exactly`` names.

    Returns:
        How many Resize nodes were replaced.
    """
    from onnx import shape_inference

    if opset_of(model) < 11 or not any(n.op_type == "Resize" for n in model.graph.node):
        return 0
    inferred = shape_inference.infer_shapes(model)
    infos = {vi.name: vi.type.tensor_type for vi in list(inferred.graph.value_info) + list(inferred.graph.input)}
    for init in model.graph.initializer:
        infos.setdefault(init.name, None)
    done = 0
    for index in reversed(range(len(model.graph.node))):
        node = model.graph.node[index]
        if node.op_type != "Resize" or (node.domain or "") not in ("", "ai.onnx"):
            continue
        info = infos.get(node.input[0])
        shape = None if info is None else [d.dim_value if d.HasField("dim_value") else None for d in info.shape.dim]
        if not shape or None in shape or 0 in shape:
            continue
        values = [_input_value(model, node, k) for k in (1, 2, 3)]
        if any(len(node.input) > k and node.input[k] and v is None and not _is_empty(model, node.input[k])
               for k, v in zip((1, 2, 3), values)):
            continue  # roi/scales/sizes computed at run time
        try:
            maps = resize_axis_maps(node, shape, *values)
        except (ValueError, IndexError, ZeroDivisionError):
            continue
        dtype = _FLOAT_TYPES.get(info.elem_type)
        if onnx2tf_resizes_exactly(node, shape, maps) or (dtype is None and not all(
                gather_indices(m) is not None and b is None for _, m, b in maps)):
            continue
        if not maps:
            new_nodes, inits = [_identity(node)], []
        else:
            new_nodes, inits = _axis_map_nodes(node, node.input[0], len(shape), maps, dtype or np.float32)
        del model.graph.node[index]
        for k, new in enumerate(new_nodes):
            model.graph.node.insert(index + k, new)
        model.graph.initializer.extend(inits)
        done += 1
    return done


def _is_empty(model, name: str) -> bool:
    value = const_value(model, name)
    return value is not None and value.size == 0


def _identity(node):
    from onnx import helper

    return helper.make_node("Identity", [node.input[0]], [node.output[0]], name=f"{node.name or 'Resize'}/identity")
