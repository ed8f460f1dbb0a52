"""Questions the ONNX passes ask of a graph: a tensor's constant value, its producer, inferred shapes.

Example:
    >>> const_value(model, "conv.weight").shape
    (16, 3, 3, 3)
    >>> symbolic_shapes(model)["logits"]
    ['batch', 10]
"""

from __future__ import annotations


def opset_of(model, default: int = 13) -> int:
    """The model's opset of the standard domain (``default`` when it names none)."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default)


def shapes(model) -> dict[str, list]:
    """Inferred shapes: an int per known dim, ``None`` per unknown one."""
    return {name: [d if isinstance(d, int) else None for d in dims] for name, dims in symbolic_shapes(model).items()}


def has_op(model, *op_types: str) -> bool:
    """Does the main graph hold a node of one of ``op_types`` (any domain)?

    Passes ask this before shape inference, which serialises the whole model with its
    weights (0.15 s a call on EfficientNet-Lite0): a pass whose op is absent costs nothing.

    Example:
        >>> has_op(model, "Reshape", "Flatten")
        True
    """
    return any(n.op_type in op_types for n in model.graph.node)


def const_value(model, name: str):
    """The value of initializer or ``Constant`` output ``name`` as a numpy array, else ``None``."""
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def producer(model, name: str):
    """The main-graph node that outputs ``name``, else ``None``."""
    return next((n for n in model.graph.node if name in n.output), None)


def symbolic_shapes(model) -> dict[str, list]:
    """Inferred shapes: an int per known dim, the ``dim_param`` name (or ``None``) per unknown one."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    result = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        if vi.type.tensor_type.HasField("shape"):
            dims = vi.type.tensor_type.shape.dim
            result[vi.name] = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims]
    return result


def elem_types(model) -> dict[str, int]:
    """Inferred element types (``onnx.TensorProto`` codes) of the graph's tensors, initializers included."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a graph inference rejects: no types known
        return {}
    result = {i.name: i.data_type for i in model.graph.initializer}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            result[vi.name] = vi.type.tensor_type.elem_type
    return result


def replace_node(model, node, new: list) -> None:
    """Put the nodes ``new`` where ``node`` stood in ``model.graph`` (a rewrite keeps the graph's order).

    Example:
        >>> replace_node(model, gelu, [mul, erf, add, out])
    """
    at = list(model.graph.node).index(node)
    model.graph.node.remove(node)
    for k, n in enumerate(new):
        model.graph.node.insert(at + k, n)
