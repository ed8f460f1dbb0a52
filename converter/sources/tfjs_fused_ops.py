"""Split the fused ops TF.js converters write into the plain TensorFlow ops they stand for.

TF.js' converter fuses a convolution or matmul with its bias and activation into one node
(``_FusedConv2D``, ``FusedDepthwiseConv2dNative``, ``_FusedMatMul``) and drops attributes
TensorFlow's own fused kernels need (``TArgs``), so TensorFlow cannot run them as written;
the plain ops are also what the trainable-weight lifting and feature search look for.

Before::

    y = _FusedConv2D(x, w, b, fused_ops=[BiasAdd, Relu6])

After::

    y/conv = Conv2D(x, w);  y/bias = BiasAdd(y/conv, b);  y = Relu6(y/bias)

The last node keeps the fused node's name, so its consumers need no change.
"""

from __future__ import annotations

from converter.errors import InputError

# fused op -> (plain op, attributes the plain op takes)
FUSED = {
    "_FusedConv2D": ("Conv2D", ("T", "strides", "padding", "data_format", "dilations", "explicit_paddings", "use_cudnn_on_gpu")),
    "FusedDepthwiseConv2dNative": ("DepthwiseConv2dNative", ("T", "strides", "padding", "data_format", "dilations", "explicit_paddings")),
    "_FusedDepthwiseConv2dNative": ("DepthwiseConv2dNative", ("T", "strides", "padding", "data_format", "dilations", "explicit_paddings")),
    "_FusedMatMul": ("MatMul", ("T", "transpose_a", "transpose_b")),
}
_ACTIVATIONS = {"Relu", "Relu6", "Elu", "Selu", "Sigmoid", "Tanh", "LeakyRelu"}


def _node(graph_def, name: str, op: str, inputs: list, t_attr, extra: dict | None = None):
    node = graph_def.node.add()
    node.name, node.op = name, op
    node.input.extend(inputs)
    node.attr["T"].CopyFrom(t_attr)
    for key, value in (extra or {}).items():
        node.attr[key].CopyFrom(value)
    return node


def _prelu(graph_def, name: str, x: str, alpha: str, t_attr) -> None:
    """``relu(x) - alpha * relu(-x)``: TensorFlow has no Prelu op."""
    _node(graph_def, f"{name}/prelu_neg", "Neg", [x], t_attr)
    _node(graph_def, f"{name}/prelu_relu_neg", "Relu", [f"{name}/prelu_neg"], t_attr)
    _node(graph_def, f"{name}/prelu_scaled", "Mul", [alpha, f"{name}/prelu_relu_neg"], t_attr)
    _node(graph_def, f"{name}/prelu_relu", "Relu", [x], t_attr)
    _node(graph_def, name, "Sub", [f"{name}/prelu_relu", f"{name}/prelu_scaled"], t_attr)


def _split(graph_def, fused) -> None:
    """Append the plain nodes of ``fused`` to ``graph_def`` (its own node is removed by the caller)."""
    from tensorflow.core.framework import attr_value_pb2

    base_op, attrs = FUSED[fused.op]
    steps = [s.decode() for s in fused.attr["fused_ops"].list.s]
    data = [i for i in fused.input if not i.startswith("^")]
    control = [i for i in fused.input if i.startswith("^")]
    args = data[2:]
    known = steps in ([], ["BiasAdd"]) or (len(steps) == 2 and steps[0] == "BiasAdd" and steps[1] in _ACTIVATIONS | {"Prelu"})
    if not known or len(args) < steps.count("BiasAdd") + steps.count("Prelu"):
        raise InputError(f"Node '{fused.name}' ({fused.op}) fuses {steps or 'nothing'} with {len(args)} argument(s); "
                         f"expected BiasAdd, optionally followed by one of {', '.join(sorted(_ACTIVATIONS | {'Prelu'}))}")
    t_attr = fused.attr["T"] if "T" in fused.attr else attr_value_pb2.AttrValue(type=1)
    names = [f"{fused.name}/{base_op.lower()}"] + [f"{fused.name}/{s.lower()}" for s in steps]
    names[-1] = fused.name
    base = _node(graph_def, names[0], base_op, data[:2] + control, t_attr,
                 {k: fused.attr[k] for k in attrs if k in fused.attr and k != "T"})
    base.device = ""
    previous = names[0]
    for step, name in zip(steps, names[1:]):
        if step == "BiasAdd":
            fmt = {"data_format": fused.attr["data_format"]} if base_op != "MatMul" and "data_format" in fused.attr else {}
            _node(graph_def, name, "BiasAdd", [previous, args[0]], t_attr, fmt)
        elif step == "Prelu":
            _prelu(graph_def, name, previous, args[1], t_attr)
        else:
            alpha = {"alpha": attr_value_pb2.AttrValue(f=fused.attr["leakyrelu_alpha"].f)} if step == "LeakyRelu" and "leakyrelu_alpha" in fused.attr else {}
            _node(graph_def, name, step, [previous], t_attr, alpha)
        previous = name


def split_fused_ops(graph_def) -> int:
    """Replace every fused node of ``graph_def`` (main graph) by its plain ops, in place; return how many.

    Raises:
        InputError: a fused node with steps it cannot stand for (named).
    """
    fused = [n for n in graph_def.node if n.op in FUSED]
    if not fused:
        return 0
    for node in fused:
        _split(graph_def, node)
    names = {n.name for n in fused}
    keep = [n for n in graph_def.node if not (n.name in names and n.op in FUSED)]
    del graph_def.node[:]
    graph_def.node.extend(keep)
    return len(fused)
