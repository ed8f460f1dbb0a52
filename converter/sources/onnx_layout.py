"""Which ONNX graphs have a channels-first layout at all, and what onnx2tf should keep as is.

onnx2tf moves every input of rank >= 3 from channels-first (NCW, NCHW, NCDHW) to
channels-last and then rewrites each op's axes to follow. That is needed where an op's
meaning depends on the channel axis (a Conv's filters, a pool's window, a
BatchNormalization's per-channel scale); in a graph of plain tensor ops (elementwise,
Reduce*, Squeeze/Unsqueeze, Slice, Shape) it only risks a wrong axis: the node tests
measured ``Unsqueeze(axes=[2])`` of a ``[3, 4, 5]`` input returning ``[3, 5, 1, 4]``.

Example:
    >>> layout_free_inputs(model)   # a graph of Add, ReduceSum, Unsqueeze
    ['x', 'axes_input']
    >>> layout_free_inputs(conv_model)
    []
"""

from __future__ import annotations

from converter.sources.onnx_compat import all_nodes

# Ops whose semantics are defined on NC[D]HW tensors: onnx2tf converts them to
# channels-last TensorFlow kernels, so their graphs need its layout change.
CHANNEL_OPS = frozenset({
    "Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "DeformConv",
    "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "MaxUnpool",
    "MaxRoiPool", "RoiAlign",
    "BatchNormalization", "InstanceNormalization", "GroupNormalization", "LRN",
    "Resize", "Upsample", "DepthToSpace", "SpaceToDepth", "GridSample", "AffineGrid", "Col2Im",
    "LSTM", "GRU", "RNN",  # recurrent_onnx2tf_options decides their inputs' layout
})


def channel_nodes(model) -> dict[str, list[str]]:
    """``{op type: node names}`` of the ops in ``CHANNEL_OPS``, subgraphs included.

    Example:
        >>> channel_nodes(conv_model)
        {'Conv': ['conv1']}
    """
    found: dict[str, list[str]] = {}
    for node in all_nodes(model.graph):
        if (node.domain or "ai.onnx") in ("ai.onnx", "") and node.op_type in CHANNEL_OPS:
            found.setdefault(node.op_type, []).append(node.name or f"<unnamed {node.op_type}>")
    return found


def layout_free_inputs(model) -> list[str]:
    """Graph inputs onnx2tf must not transpose: all of them when no op needs NCHW, else none.

    Args:
        model: the ``onnx.ModelProto`` onnx2tf gets.

    Returns:
        The names of the graph inputs (initializers excluded), in graph order; ``[]``
        when the graph holds a ``CHANNEL_OPS`` op.

    Example:
        >>> layout_free_inputs(model)  # Unsqueeze(x [3, 4, 5], axes=[2])
        ['x']
    """
    if channel_nodes(model):
        return []
    inits = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def layout_onnx2tf_options(model, keep: list[str] | tuple = ()) -> dict:
    """onnx2tf options keeping the layout-free inputs' shapes, merged with the ``keep`` already chosen.

    Args:
        model: the ``onnx.ModelProto`` onnx2tf gets.
        keep: input names already in ``keep_shape_absolutely_input_names``.

    Returns:
        ``{"keep_shape_absolutely_input_names": [...], "disable_strict_mode": True,
        "transferjs_layout_free": True}`` for a layout-free graph (the last key is the
        runner's, see ``onnx2tf_transpose_flags``), ``{}`` when there is nothing to keep.

    Example:
        >>> layout_onnx2tf_options(model)
        {'keep_shape_absolutely_input_names': ['x'], 'disable_strict_mode': True, 'transferjs_layout_free': True}
    """
    free = layout_free_inputs(model)
    names = list(keep) + [n for n in free if n not in keep]
    options = {"keep_shape_absolutely_input_names": names} if names else {}
    if free:
        # onnx2tf's strict mode re-picks Reduce*/Concat axes by comparing with onnxruntime on
        # channels-last test data, a repair for its own layout change; with none made it picked
        # axis 2 for ReduceSum(Abs(x [3, 2, 2]), axes=[1]).
        options["disable_strict_mode"] = True
        # onnx2tf guesses "transposed" for any tensor whose dims after the first are equal;
        # nothing is transposed here (onnx2tf_runner reads and drops this key).
        options["transferjs_layout_free"] = True
    return options
