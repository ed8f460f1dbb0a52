"""What each conv / depthwise / matmul kernel of a TF.js graph model sees, on calibration images.

``calibrated_rounding`` needs, per kernel, the second moment ``H = Xᵀ X`` of its
im2col rows and their mean. ``model.json``'s graph is rebuilt as a TensorFlow graph
(weights from the shards, TF.js' fused ops split back into TF's plain ones by the
TF.js graph-model reader's ``split_fused_ops``) and run
on the calibration batch; each kernel's input is sampled at ``MAX_ROWS`` seeded
output positions and the sums are taken with TF matmuls.

Before::  model.json  _FusedConv2D(x, W, b) fused_ops=[BiasAdd, Relu6]
After::   TF graph    Relu6(BiasAdd(Conv2D(x, W), b))      x fetched -> rows [n, kh*kw*Cin]

Example:
    >>> stats = kernel_input_stats(nodes, weights, {"image": x}, {"conv/W": "Conv2D"})
    >>> stats["conv/W"].hessian.shape
    (1152, 1152)
"""

from __future__ import annotations

import base64
import copy
import zlib
from dataclasses import dataclass

import numpy as np

from converter.sources.tfjs_fused_ops import split_fused_ops

# Sampled im2col rows per kernel (seeded): H of a 1152-wide input is well estimated by
# a few thousand rows, and the cost stays independent of the image size.
MAX_ROWS = 4096
# A depthwise channel's Hessian is only kh*kw wide (9 or 25): fewer rows estimate it, and its
# per-channel products are the costliest part of the sums.
DEPTHWISE_ROWS = 1024
# Images run through the graph at once (memory: every kernel input of a batch is fetched).
BATCH = 4
SEED = 0


@dataclass(frozen=True)
class KernelInputs:
    """A kernel's input statistics: ``hessian`` ``[K, K]`` (depthwise: ``[C, kk, kk]``), ``mean`` ``[K]``
    (depthwise ``[C, kk]``), ``rows`` sampled."""

    hessian: np.ndarray
    mean: np.ndarray
    rows: int


def _graph_def(nodes: list[dict], weights: dict[str, np.ndarray]):
    """A ``tf.compat.v1.GraphDef`` of ``model.json``'s nodes with the weights as constants."""
    import tensorflow as tf
    from google.protobuf import json_format

    plain = []
    for node in copy.deepcopy(nodes):
        node.pop("device", None)
        if node["op"] == "Const" and node["name"] in weights:
            node["attr"]["value"] = {}
        plain.append(node)
    graph = json_format.ParseDict({"node": plain}, tf.compat.v1.GraphDef(), ignore_unknown_fields=True)
    split_fused_ops(graph)
    for node in graph.node:
        if node.op == "Const" and node.name in weights:
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[node.name]))
    return graph


def _sample(shape: tuple, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` flat indices into an array of ``shape`` (all of them when fewer)."""
    size = int(np.prod(shape))
    return np.arange(size) if size <= n else np.sort(rng.choice(size, n, replace=False))


def _conv_rows(x: np.ndarray, node: dict, kernel_shape: tuple, n: int, rng) -> np.ndarray:
    """im2col rows ``[n, kh, kw, C]`` of ``x`` (NHWC) at ``n`` sampled output positions of the conv ``node``."""
    attr = node.get("attr", {})
    strides = [int(i) for i in attr.get("strides", {}).get("list", {}).get("i", [1, 1, 1, 1])][1:3]
    padding = base64.b64decode(attr.get("padding", {}).get("s", "")).decode()
    kh, kw = kernel_shape[:2]
    b, h, w, _ = x.shape
    if padding == "SAME":
        oh, ow = -(-h // strides[0]), -(-w // strides[1])
        ph, pw = max((oh - 1) * strides[0] + kh - h, 0), max((ow - 1) * strides[1] + kw - w, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (h - kh) // strides[0] + 1, (w - kw) // strides[1] + 1
    img, i, j = np.unravel_index(_sample((b, oh, ow), n, rng), (b, oh, ow))
    di, dj = np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij")
    rows = x[img[:, None, None], i[:, None, None] * strides[0] + di, j[:, None, None] * strides[1] + dj]
    return rows  # [n, kh, kw, C]


def _rows(x: np.ndarray, node: dict, op: str, kernel_shape: tuple, n: int, rng) -> np.ndarray:
    """Sampled input rows of one kernel: ``[n, K]`` (conv, matmul) or ``[n, kk, C]`` (depthwise)."""
    if "MatMul" in op:
        x = x.reshape(-1, x.shape[-1])
        return x[_sample(x.shape[:1], n, rng)]
    if kernel_shape[:2] == (1, 1) and "Depthwise" not in op and set(_strides(node)) == {1}:
        flat = x.reshape(-1, x.shape[-1])  # 1x1, stride 1: every position is a row
        return flat[_sample(flat.shape[:1], n, rng)]
    rows = _conv_rows(x, node, kernel_shape, n, rng)
    return rows.reshape(len(rows), -1, rows.shape[-1]) if "Depthwise" in op else rows.reshape(len(rows), -1)


def _strides(node: dict) -> list[int]:
    return [int(i) for i in node.get("attr", {}).get("strides", {}).get("list", {}).get("i", [1, 1, 1, 1])]


def _moments(rows: np.ndarray, depthwise: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(Σ rowsᵀ rows, Σ rows)``: ``[K, K], [K]`` (float32 BLAS) or per channel ``[C, kk, kk], [C, kk]`` (TF einsum)."""
    import tensorflow as tf

    if depthwise:
        return tf.einsum("nkc,nlc->ckl", rows, rows).numpy().astype(np.float64), rows.sum(0, dtype=np.float64).T
    rows = np.ascontiguousarray(rows, np.float32)
    return (rows.T @ rows).astype(np.float64), rows.sum(0, dtype=np.float64)


def kernel_input_stats(nodes: list[dict], weights: dict[str, np.ndarray], feeds: dict[str, np.ndarray],
                       kernels: dict[str, tuple[dict, str]]) -> dict[str, KernelInputs]:
    """Run ``model.json``'s graph on ``feeds``; the input statistics of each kernel.

    Args:
        nodes: ``model.json``'s ``modelTopology.node``.
        weights: every Const's value by name (float32 kernels before quantization).
        feeds: the calibration batch by placeholder tensor name (``"image:0"``).
        kernels: ``{kernel weight: (the node it is the filter of, that node's op)}``.

    Returns:
        ``{kernel weight: KernelInputs}``.

    Example:
        >>> kernel_input_stats(nodes, weights, {"image:0": x}, {"W": (conv_node, "_FusedConv2D")})["W"].rows
        4096
    """
    with _CalibrationGraph(nodes, weights, feeds) as graph:
        return graph.stats(kernels)


class _CalibrationGraph:
    """``model.json``'s graph in a TF session, run on the calibration batch; kernels can be swapped."""

    def __init__(self, nodes: list[dict], weights: dict[str, np.ndarray], feeds: dict[str, np.ndarray]):
        import tensorflow as tf

        self.graph, self.weights, self.feeds = tf.Graph(), weights, feeds
        with self.graph.as_default():
            tf.compat.v1.import_graph_def(_graph_def(nodes, weights), name="")
        self.session = tf.compat.v1.Session(graph=self.graph)  # not as a context: it would make the graph the default
        self.replaced: dict = {}  # {kernel Const tensor: the value fed instead (its rounded copy)}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.session.close()

    def replace(self, name: str, value: np.ndarray) -> None:
        """Run every later pass with Const ``name`` set to ``value`` (a dequantized kernel, a corrected bias)."""
        self.replaced[self.graph.get_tensor_by_name(name + ":0")] = value.astype(self.weights[name].dtype)

    def stats(self, kernels: dict[str, tuple[dict, str]], hessians: bool = True) -> dict[str, KernelInputs]:
        """Input statistics of ``kernels`` with the current replacements (``hessians=False``: means only)."""
        fetch = {k: self.graph.get_tensor_by_name(n["input"][0] if ":" in n["input"][0] else n["input"][0] + ":0")
                 for k, (n, _) in kernels.items()}
        total = len(next(iter(self.feeds.values())))
        batches, sums = -(-total // BATCH), {}
        for start in range(0, total, BATCH):
            feed = {**self.replaced, **{k: v[start : start + BATCH] for k, v in self.feeds.items()}}
            values = self.session.run(fetch, feed)
            for name, (node, op) in kernels.items():
                depthwise = "Depthwise" in op
                per_batch = -(-(DEPTHWISE_ROWS if depthwise else MAX_ROWS) // batches)
                # Seeded by kernel and batch: every pass samples the same positions, so the float and
                # the rounded graph's means differ by the rounding, not by the sampling.
                rng = np.random.default_rng([SEED, zlib.crc32(name.encode()), start])
                rows = _rows(values[name], node, op, tuple(self.weights[name].shape), per_batch, rng)
                h, s = _moments(rows, depthwise) if hessians else (0.0, rows.sum(0, dtype=np.float64).T if depthwise
                                                                   else rows.sum(0, dtype=np.float64))
                old = sums.get(name, (0.0, 0.0, 0))
                sums[name] = (old[0] + h, old[1] + s, old[2] + len(rows))
        return {name: KernelInputs(h / n if hessians else None, s / n, n) for name, (h, s, n) in sums.items()}


# Passes of sequential rounding: the kernels, in graph order, are split into this many groups; each
# group's inputs are sampled with every earlier group already rounded (one graph run per group).
# EfficientNet-Lite0, mean KL(float32 || uint8) on the 20 calibration crops (TF.js wasm), 1 / 4 / 12 /
# 81 groups: 8.82e-4 / 8.70e-4 / 8.91e-4 / 8.86e-4, export 20 / 35 / 25 / 49 s (cold float32: 16 s).
# No gain beyond sampling noise, so one group (every kernel from the float32 graph's inputs).
GROUPS = 1


def sequential_kernel_inputs(nodes: list[dict], weights: dict[str, np.ndarray], feeds: dict[str, np.ndarray],
                             kernels: dict[str, tuple[dict, str]], round_kernel, groups: int | None = None,
                             float_means: bool = False) -> dict:
    """Round ``kernels`` in graph order, each from inputs that already carry the earlier kernels' rounding.

    GPTQ's own order (Frantar et al.): a layer's Hessian comes from what the quantized network before
    it computes, so its rounding compensates the earlier layers' error as well as its own.

    Before::  H_l from x_l of the float32 graph                   every layer alone
    After::   group 1 rounded -> run -> H of group 2 from x̃ -> rounded -> run -> …

    Args:
        nodes, weights, feeds, kernels: as for ``kernel_input_stats``.
        round_kernel: ``(name, KernelInputs of x̃, mean of float x) -> (result, {Const: value})``: what
            the kernel's rounding yields, and the Consts (kernel, corrected bias) later runs use.
        groups: graph runs (default ``GROUPS``; time grows with it; 1: every kernel from float inputs).
        float_means: also run the float32 graph once for each kernel's mean input (else ``None``).

    Returns:
        ``{kernel weight: result of round_kernel}``.

    Example:
        >>> sequential_kernel_inputs(nodes, weights, {"image:0": x}, kernels, round_kernel)["W"]
    """
    order = [n["input"][1].split(":")[0] for n in nodes if n.get("input", [])[1:2] and n["input"][1].split(":")[0] in kernels]
    order = list(dict.fromkeys(order))
    size = -(-len(order) // max(1, GROUPS if groups is None else groups))
    results = {}
    with _CalibrationGraph(nodes, weights, feeds) as graph:
        means = {k: v.mean for k, v in graph.stats(kernels, hessians=False).items()} if float_means else {}
        for start in range(0, len(order), size):
            group = {k: kernels[k] for k in order[start : start + size]}
            for name, inputs in graph.stats(group).items():
                results[name], replaced = round_kernel(name, inputs, means.get(name))
                for const, value in replaced.items():
                    graph.replace(const, value)
    return results
