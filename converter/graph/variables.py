"""A frozen GraphDef saved as a SavedModel whose float weight constants are trainable variables.

A graph read from a frozen format (a TF.js graph model) holds its weights as constants;
``lift_constants_to_variables`` turns every float constant with more than one element into
a ``tf.Variable`` and feeds it back through ``import_graph_def``'s ``input_map`` (the constant
node is replaced by a placeholder, so the SavedModel stores each weight once, as a variable).

Example:
    >>> save_graph_with_variables(graph_def, [("input", spec)], ["Identity:0"], keys, "out/saved_model")
    106
"""

from __future__ import annotations

import re
from pathlib import Path

_FLOAT = (1, 19)  # DT_FLOAT, DT_HALF


def _elements(tensor_proto) -> int:
    n = 1
    for d in tensor_proto.tensor_shape.dim:
        n *= d.size
    return n


def _variable_name(node: str) -> str:
    """The node name's last 60 characters, as a valid scope name."""
    name = re.sub(r"[^A-Za-z0-9_.]", "_", node)[-60:].lstrip("_.")
    return name or "weight"


def lift_constants_to_variables(graph_def) -> tuple[object, dict]:
    """A copy of ``graph_def`` with float constants (> 1 element) replaced by placeholders, and their values.

    Returns:
        ``(graph_def, {node name: numpy value})``.
    """
    import tensorflow as tf
    from tensorflow.core.framework import graph_pb2

    out = graph_pb2.GraphDef()
    out.CopyFrom(graph_def)
    values = {}
    for node in out.node:
        if node.op != "Const":
            continue
        t = node.attr["value"].tensor
        if t.dtype not in _FLOAT or _elements(t) <= 1:
            continue
        values[node.name] = tf.make_ndarray(t)
        dtype = node.attr["dtype"]
        node.op = "Placeholder"
        node.ClearField("attr")
        node.attr["dtype"].CopyFrom(dtype)
        node.attr["shape"].shape.CopyFrom(t.tensor_shape)
    # A control edge from a placeholder (TF.js graphs have ``^input`` on constants) would keep the
    # unmapped placeholder alive in the function: ``input_map`` rewires data edges only.
    placeholders = {n.name for n in out.node if n.op == "Placeholder"}
    for node in out.node:
        kept = [i for i in node.input if not (i.startswith("^") and i[1:] in placeholders)]
        if len(kept) != len(node.input):
            del node.input[:]
            node.input.extend(kept)
    return out, values


def _with_shape(tensor, shape):
    """``tensor`` with its static shape set where the graph cannot infer it (a loop's outputs)."""
    import tensorflow as tf

    out = tf.identity(tensor)
    if shape is not None and out.shape.rank is None:
        out.set_shape(shape)
    return out


def save_graph_with_variables(graph_def, inputs: list, outputs: list[str], keys: dict[str, str], folder,
                              shapes: dict | None = None) -> int:
    """Write ``graph_def`` as a SavedModel at ``folder`` with its float weights as trainable variables.

    Args:
        inputs: ``(placeholder node name, tf.TensorSpec)`` of each input.
        outputs: output tensor names (``"Identity:0"``).
        keys: signature key of each input node name and output tensor name.
        shapes: the known shape of output tensors (``None`` for a dynamic dim), for outputs TensorFlow cannot infer.

    Returns:
        How many variables it holds.
    """
    import tensorflow as tf

    # Only what the outputs need: a dangling node (a loop's NoOp) would become a control output of the
    # function, wired across the loop's frame.
    needed = [o.split(":")[0] for o in outputs] + [n for n, _ in inputs]
    lifted, values = lift_constants_to_variables(tf.compat.v1.graph_util.extract_sub_graph(graph_def, needed))
    names = list(values)

    class Graph(tf.Module):
        def __init__(self):
            super().__init__()
            self.weights = [tf.Variable(values[n], trainable=True, name=_variable_name(n)) for n in names]

        @tf.function(input_signature=[tf.TensorSpec(s.shape, s.dtype, name=keys[n]) for n, s in inputs])
        def serve(self, *args):
            input_map = {f"{n}:0": a for (n, _), a in zip(inputs, args)}
            input_map.update({f"{n}:0": v.read_value() for n, v in zip(names, self.weights)})
            results = tf.graph_util.import_graph_def(lifted, input_map=input_map, return_elements=outputs, name="graph")
            return {keys[o]: _with_shape(t, (shapes or {}).get(o)) for o, t in zip(outputs, results)}

    module = Graph()
    tf.saved_model.save(module, str(Path(folder)), signatures={"serving_default": module.serve})
    return len(names)
