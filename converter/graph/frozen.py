"""A SavedModel's serving function as one frozen GraphDef, and what its outputs mean.

Example:
    >>> graph_def, fn = frozen_graph("out/saved_model")
    >>> output_meanings("out/saved_model", {"logits": [None, 1000]})
    {'logits': 'logits'}
"""

from __future__ import annotations

from converter.runtimes.tensorflow import serving_function

_THROUGH = {"Identity", "IdentityN"}


def frozen_graph(saved_model_dir):
    """The serving function as one constant-folded GraphDef, and the frozen function itself."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(serving_function(saved_model_dir))
    return frozen.graph.as_graph_def(), frozen


def _producer_op(nodes: dict, tensor: str) -> str | None:
    """The op that computes ``tensor``, looking through Identity nodes."""
    name, _, index = tensor.partition(":")
    seen = set()
    while name in nodes and name not in seen:
        seen.add(name)
        node = nodes[name]
        if node.op not in _THROUGH:
            return node.op
        data = [i for i in node.input if not i.startswith("^")]
        k = int(index or 0) if node.op == "IdentityN" else 0
        if k >= len(data):
            return None
        name, _, index = data[k].partition(":")
    return None


def output_meaning(producer: str | None, shape: list, dtype: str, name: str = "") -> str:
    """``"probabilities"`` (a Softmax computes it), ``"logits"`` (other classifier rows), ``"features"`` or ``"values"``.

    An output named ``features`` (a backbone cut at its feature layer, as ``retrain`` writes) is ``"features"``.
    """
    if name == "features":
        return "features"
    if producer == "Softmax":
        return "probabilities"
    if len(shape) == 2 and dtype.startswith("float") and (shape[-1] is None or shape[-1] > 1):
        return "logits"
    return "values"


def output_meanings(saved_model_dir, dtypes_shapes: dict[str, tuple]) -> dict[str, str]:
    """``{output key: meaning}`` of a SavedModel's serving outputs, read from its graph.

    Args:
        dtypes_shapes: ``{output key: (shape, dtype)}`` of the signature.
    """
    graph_def, frozen = frozen_graph(saved_model_dir)
    nodes = {n.name: n for n in graph_def.node}
    result = {}
    # The frozen function's outputs are the signature's dict flattened: in sorted key order.
    for key, tensor in zip(sorted(dtypes_shapes), frozen.outputs):
        shape, dtype = dtypes_shapes[key]
        result[key] = output_meaning(_producer_op(nodes, tensor.name), shape, dtype, key)
    return result
