"""Which activations of a CNN backbone to pool beside its features: the outputs of its last stages.

A CNN is a chain of stages; inside a stage the channel count swells (an inverted bottleneck's
expansion, 672 channels in EfficientNet-Lite0's stage 6) and shrinks again to the stage's own
width (112, 192, 320). Walking the ancestors of the feature node in topological order and
remembering, for each channel count of a 4-D float tensor, the *last* tensor with it, the widths
ordered by those positions go up and down: a stage's output is a width smaller than both of its
neighbours in that sequence (a local minimum). The expansion widths are local maxima, and the head
width (1280, the last one) has no right neighbour, so neither is picked. On the converted
EfficientNet-Lite0 the last three are ``add_44``, ``add_62``, ``add_65`` (112, 192, 320 channels),
whose pooled outputs beside the 1280-d features gave +2.4 points held out (BENCHMARKS.md, issue 15).

Converted graphs are NHWC (channels last). Tensors with a spatial size of 1 x 1 (squeeze-and-excite
vectors) are not stage outputs and are skipped.

Example:
    >>> graph_def, frozen = frozen_graph("demo-out/efficientnet-lite0/saved_model")
    >>> stage_taps(graph_def, frozen.graph, "model/tf.reshape/Reshape:0")
    ['model/tf.math.add_44/Add:0', 'model/tf.math.add_62/Add:0', 'model/tf.math.add_65/Add:0']
"""

from __future__ import annotations

from converter.graph.trainable import TrainableGraph

# How many stage outputs are pooled (the study: the last 3 beat the last 1, 2 and 4).
STAGE_TAPS = 3


def channel_widths(graph_def, graph, feature_node: str) -> list[tuple[int, str]]:
    """``(channels, tensor)`` of the last 4-D float tensor of each width on the path to ``feature_node``,
    in the order of those last positions (ancestors in the GraphDef's topological order).

    Args:
        graph_def: the frozen GraphDef.
        graph: the ``tf.Graph`` it came from (for the tensors' static shapes).
        feature_node: the tensor the features are taken from.
    """
    last: dict[int, tuple[int, str]] = {}
    ancestors = TrainableGraph(graph_def, "", feature_node, 0).ancestors()
    for position, name in enumerate(ancestors):
        for tensor in graph.get_operation_by_name(name).outputs:
            shape = tensor.shape.as_list() if tensor.shape.rank == 4 else None
            if not shape or not tensor.dtype.is_floating or not shape[3] or tensor.op.type in ("Const", "Identity"):
                continue
            if shape[1] == 1 and shape[2] == 1:
                continue  # a squeeze-and-excite vector, not a stage's activation
            last[shape[3]] = (position, tensor.name)
    return [(width, name) for width, (_, name) in sorted(last.items(), key=lambda item: item[1][0])]


def stage_taps(graph_def, graph, feature_node: str, count: int = STAGE_TAPS) -> list[str]:
    """The last ``count`` stage outputs before ``feature_node`` (local minima of ``channel_widths``).

    Returns:
        Tensor names, earliest first; fewer (or none) when the graph has fewer stages.

    Example:
        >>> stage_taps(graph_def, frozen.graph, feature_node)
        ['model/tf.math.add_44/Add:0', 'model/tf.math.add_62/Add:0', 'model/tf.math.add_65/Add:0']
    """
    widths = channel_widths(graph_def, graph, feature_node)
    minima = [name for i, (width, name) in enumerate(widths)
              if 0 < i < len(widths) - 1 and width < widths[i - 1][0] and width < widths[i + 1][0]]
    return minima[-count:] if count else []
