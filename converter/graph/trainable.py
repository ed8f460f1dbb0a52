"""A converted (frozen) graph as a callable whose top weight layers are trainable variables.

onnx2tf's SavedModel holds every weight as a constant (0 variables), and so does any
frozen graph. To fine-tune, the constants of the last N weight layers (convolutions,
depthwise convolutions, dense layers, and the bias/scale constants applied right after
them) are lifted into ``tf.Variable``s and fed back in with ``import_graph_def``'s
``input_map``. Everything else stays constant; batch-norm statistics are frozen by
construction (folded into the convolutions, or inference-mode ``FusedBatchNorm``).

Example:
    >>> g = TrainableGraph(graph_def, "x:0", "features:0", trainable_layers=4)
    >>> len(g.weight_layers), [v.shape for v in g.trainable_variables][:2]
    (49, [TensorShape([1, 1, 192, 320]), TensorShape([320])])
    >>> features = g(images)               # differentiable w.r.t. g.trainable_variables

With ``taps`` (4-D NHWC tensors upstream of the output, e.g. a CNN's stage outputs), the result is
the output followed by each tap's global average pool over height and width, concatenated on the
last axis: one graph, so every export of it computes the same concatenation.
"""

from __future__ import annotations

WEIGHT_OPS = {"Conv2D", "DepthwiseConv2dNative", "MatMul", "BatchMatMulV2", "Conv3D", "Conv2DBackpropInput"}
_AFTER_OPS = {"BiasAdd", "Add", "AddV2", "Mul"}  # bias / scale applied to a weight layer's output


def _base(tensor: str) -> str:
    return tensor.split(":")[0].lstrip("^")


def import_graph(graph_def, input_map: dict, output: str, name: str = "backbone", taps=()):
    """Import ``graph_def`` into the current (function) graph with ``input_map``; return ``output``
    (with ``taps``: ``output`` and the taps' global average pools, concatenated on the last axis)."""
    import tensorflow as tf

    out, *tapped = tf.graph_util.import_graph_def(graph_def, input_map=input_map, return_elements=[output, *taps],
                                                  name=name)
    if not tapped:
        return out
    return tf.concat([out, *(tf.reduce_mean(t, axis=[1, 2]) for t in tapped)], axis=-1, name="multi_level_features")


class TrainableGraph:
    """Run ``graph_def`` from ``input_name`` to ``output_name`` with its top weights as variables.

    Args:
        graph_def: a frozen GraphDef (constants, no variables).
        input_name, output_name: tensor names, e.g. ``"x:0"``.
        trainable_layers: how many weight layers, counted back from the outputs (``output_name`` and
            ``taps``), get trainable variables (0: none; the graph is a fixed function).
        taps: 4-D NHWC tensor names whose global average pools follow the output (default none).
    """

    def __init__(self, graph_def, input_name: str, output_name: str, trainable_layers: int = 0, taps=()):
        import tensorflow as tf

        self.graph_def, self.input_name, self.output_name = graph_def, input_name, output_name
        self.taps = tuple(taps)
        self.nodes = {n.name: n for n in graph_def.node}
        self.weight_layers = [n for n in self.ancestors() if self.nodes[n].op in WEIGHT_OPS]
        top = self.weight_layers[max(0, len(self.weight_layers) - trainable_layers):] if trainable_layers > 0 else []
        self.trainable_layer_names = top
        self.variables: dict[str, tf.Variable] = {}
        for const in self._layer_constants(top):
            value = tf.make_ndarray(self.nodes[const].attr["value"].tensor)
            self.variables[const + ":0"] = tf.Variable(value, trainable=True, name=const.replace("/", "_")[-60:])

    @property
    def trainable_variables(self) -> list:
        return list(self.variables.values())

    def variables_by_layer(self) -> list[list]:
        """The trainable variables grouped by weight layer, the top (nearest the output) first.

        Example:
            >>> [len(vs) for vs in TrainableGraph(gd, "x:0", "f:0", 3).variables_by_layer()]
            [2, 1, 2]
        """
        groups, taken = [], set()
        for layer in reversed(self.trainable_layer_names):
            names = [c + ":0" for c in self._layer_constants([layer]) if c + ":0" not in taken]
            taken.update(names)
            groups.append([self.variables[n] for n in names])
        return groups

    def ancestors(self) -> list[str]:
        """Nodes the outputs (``output_name`` and the taps) depend on, in the GraphDef's (topological) order."""
        seen, stack = set(), [_base(self.output_name), *(_base(t) for t in self.taps)]
        while stack:
            name = stack.pop()
            if name in seen or name not in self.nodes:
                continue
            seen.add(name)
            stack.extend(_base(i) for i in self.nodes[name].input)
        return [n.name for n in self.graph_def.node if n.name in seen]

    def _constant(self, tensor: str) -> str | None:
        """The float Const (with more than one element) behind ``tensor``, through Identity nodes."""
        node = self.nodes.get(_base(tensor))
        while node is not None and node.op == "Identity" and node.input:
            node = self.nodes.get(_base(node.input[0]))
        if node is None or node.op != "Const":
            return None
        t = node.attr["value"].tensor
        elements = 1
        for d in t.tensor_shape.dim:
            elements *= d.size
        return node.name if t.dtype in (1, 19) and elements > 1 else None  # DT_FLOAT, DT_HALF

    def _layer_constants(self, layers: list[str]) -> list[str]:
        consumers: dict[str, list[str]] = {}
        for n in self.graph_def.node:
            for i in n.input:
                consumers.setdefault(_base(i), []).append(n.name)
        found: list[str] = []
        for layer in layers:
            chain = [layer]
            while len(chain) < 4:  # e.g. MatMul → Mul (Gemm's alpha) → AddV2 (bias)
                after = consumers.get(chain[-1], [])
                if len(after) != 1 or self.nodes[after[0]].op not in _AFTER_OPS:
                    break
                chain.append(after[0])
            for name in chain:
                for tensor in self.nodes[name].input:
                    const = self._constant(tensor)
                    if const and const not in found:
                        found.append(const)
        return found

    def __call__(self, x):
        """The output tensor for ``x``; eagerly too (through a cached ``tf.function``)."""
        import tensorflow as tf

        if tf.executing_eagerly():
            if not hasattr(self, "_eager"):
                self._eager = tf.function(self._import)
            return self._eager(x)
        return self._import(x)

    def _import(self, x):
        input_map = {self.input_name: x, **{name: v.read_value() for name, v in self.variables.items()}}
        return import_graph(self.graph_def, input_map, self.output_name, taps=self.taps)
