"""The backbone's feature layer, and features computed once and cached on disk.

The feature node is the tensor feeding the final classifier: walking back from
the model's output past Softmax / bias adds / Identity to the last MatMul, its
input (the pooled features). ``--feature-node`` names another tensor. With ``multi_level``
the features are that tensor followed by the pooled outputs of the backbone's last stages
(``feature_taps``): the first ``base_dim`` columns are the default features.

Example:
    >>> fx = FeatureExtractor(ConvertedModel.load("out"))
    >>> fx.node, fx.dim
    ('PartitionedCall/.../Squeeze:0', 1280)
    >>> feats = cached_features(fx, paths, cache_dir)      # (N, 1280) float32
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from converter.atomic import remove_stale_files, write_atomic
from converter.errors import InputError
from converter.graph.frozen import frozen_graph
from converter.graph.trainable import TrainableGraph
from converter.images import load_rgb, preprocess
from retrain.feature_taps import stage_taps

# Ops between the classifier's MatMul and the output (bias, Gemm's alpha, activations).
_PASS_THROUGH = {"Identity", "Softmax", "BiasAdd", "AddV2", "Add", "Mul", "IdentityN", "Relu", "Sigmoid"}


def candidate_nodes(graph_def, frozen) -> list[tuple[str, list]]:
    """Tensors that could be features: 2-D float outputs of the graph's ops, with shapes."""
    result = []
    for op in frozen.graph.get_operations():
        for t in op.outputs:
            shape = t.shape.as_list() if t.shape.rank is not None else None
            if (shape and len(shape) == 2 and t.dtype.is_floating and shape[1] and shape[1] > 1
                    and op.type not in ("Const", "Identity", "IdentityN")):
                result.append((t.name, shape))
    return result


def default_feature_node(graph_def, frozen) -> str:
    """The input of the last MatMul on the path back from the first output."""
    nodes = {n.name: n for n in graph_def.node}

    def is_constant(tensor: str) -> bool:
        node = nodes.get(tensor.split(":")[0].lstrip("^"))
        while node is not None and node.op == "Identity" and node.input:
            node = nodes.get(node.input[0].split(":")[0])
        return node is None or node.op == "Const"

    name = frozen.outputs[0].name.split(":")[0]
    seen = set()
    while name in nodes and name not in seen:
        seen.add(name)
        node = nodes[name]
        if node.op == "MatMul":
            return node.input[0] if ":" in node.input[0] else node.input[0] + ":0"
        data = [i for i in node.input if not i.startswith("^") and not is_constant(i)]
        if node.op not in _PASS_THROUGH or len(data) != 1:
            break  # the data path forks or ends before a MatMul
        name = data[0].split(":")[0]
    raise InputError(
        "No classifier layer found to take features from (expected a final MatMul). "
        "Pick one with --feature-node; candidates (transferjs inspect lists them): "
        + ", ".join(n for n, _ in candidate_nodes(graph_def, frozen)[-8:])
    )


def graph_key(graph, preprocessing, layout) -> str:
    """What the features depend on, hashed: the op types and weights on the path to the feature node,
    the preprocessing and the layout — not node names, which differ each time a model is converted."""
    import dataclasses

    h = hashlib.sha256(json.dumps([dataclasses.asdict(preprocessing), layout], sort_keys=True).encode())
    ancestors = graph.ancestors()
    for name in ancestors:
        node = graph.nodes[name]
        h.update(node.op.encode())
        if node.op == "Const":
            h.update(node.attr["value"].tensor.SerializeToString())
    taps = getattr(graph, "taps", ())
    if taps:  # their positions among the ancestors (the ancestors alone are the same with or without them)
        h.update(json.dumps([ancestors.index(t.split(":")[0]) for t in taps]).encode())
    return h.hexdigest()[:16]


class FeatureExtractor:
    """Runs the backbone up to the feature node.

    Args:
        model: the converted model (its SavedModel, input spec, preprocessing).
        node: a tensor name of the frozen graph; default: ``default_feature_node``.
        multi_level: also pool the outputs of the last stages (``stage_taps``) after the default
            features; ignored with ``node`` given and for channels-first inputs.

    Attributes:
        taps: the pooled stage outputs (tensor names; empty: the features are ``node`` alone).
        dim, base_dim: the width of the features, and of ``node``'s (their first columns).
    """

    def __init__(self, model, node: str | None = None, multi_level: bool = False, _frozen=None):
        import tensorflow as tf

        self.model = model
        self.graph_def, frozen = _frozen or frozen_graph(model.saved_model)
        self._frozen = (self.graph_def, frozen)
        (self.input,) = [t for t in model.inputs]
        self.placeholder = frozen.inputs[0].name
        known = {n for n, _ in candidate_nodes(self.graph_def, frozen)}
        self.node = node or default_feature_node(self.graph_def, frozen)
        if node and node not in known:
            raise InputError(f"--feature-node '{node}' is not a 2-D float tensor of the model; candidates: {sorted(known)[-8:]}")
        channels_last = (self.input.layout or "NHWC") == "NHWC"
        self.taps = stage_taps(self.graph_def, frozen.graph, self.node) if multi_level and not node and channels_last else []
        self.extract = self.trainable(0)
        self._fn = tf.function(self.extract, input_signature=[tf.TensorSpec([None, *self.input.shape[1:]], tf.float32)])
        self.dim = int(self._fn.get_concrete_function().structured_outputs.shape[-1])
        self.base_dim = int(frozen.graph.get_tensor_by_name(self.node).shape[-1]) if self.taps else self.dim
        self.key = graph_key(self.extract, model.preprocessing, self.input.layout)
        self._base = None if self.taps else self

    def trainable(self, layers: int):
        """The backbone up to the feature node (and the taps) with its last ``layers`` weight layers as variables."""

        return TrainableGraph(self.graph_def, self.placeholder, self.node, layers, taps=self.taps)

    def base(self) -> "FeatureExtractor":
        """The extractor of the default features alone (no taps): itself when it has none."""
        if self._base is None:  # taps are only taken at the default node: the same node without them
            self._base = FeatureExtractor(self.model, None, _frozen=self._frozen)
        return self._base

    def for_columns(self, columns: int | None) -> "FeatureExtractor":
        """The extractor whose features are the first ``columns`` of these (``None``: all of them).

        Raises:
            ValueError: ``columns`` is neither ``dim`` nor ``base_dim``.
        """
        if columns is None or columns == self.dim:
            return self
        if columns == self.base_dim:
            return self.base()
        raise ValueError(f"A head on {columns} feature columns fits neither these features ({self.dim}) "
                         f"nor the default ones ({self.base_dim})")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self._fn(batch).numpy()


def cached_features(fx: FeatureExtractor, paths: list[Path], cache_dir: Path, batch_size: int = 32, progress=None):
    """Features of each image, from ``cache_dir`` when known (keyed by image bytes and model).

    Returns:
        ``(features (N, dim) float32, ok mask (N,), {path: reason} for unreadable images)``.
    """

    cache = Path(cache_dir) / fx.key
    cache.mkdir(parents=True, exist_ok=True)
    feats = np.zeros((len(paths), fx.dim), np.float32)
    ok = np.zeros(len(paths), bool)
    failed, todo = {}, []
    remove_stale_files(cache)
    for i, p in enumerate(paths):
        key = cache / (hashlib.sha256(Path(p).read_bytes()).hexdigest()[:32] + ".npy")
        cached = read_cache_entry(key, fx.dim)
        if cached is not None:
            feats[i], ok[i] = cached, True
        else:
            todo.append((i, p, key))
    if progress:
        progress(len(paths) - len(todo), len(paths))
    for start in range(0, len(todo), batch_size):
        chunk, images = [], []
        for i, p, key in todo[start : start + batch_size]:
            try:
                images.append(load_rgb(p))
                chunk.append((i, key))
            except InputError as e:
                failed[str(p)] = str(e)
        if images:
            x = preprocess(images, fx.model.preprocessing, fx.input.layout or "NHWC")
            for (i, key), f in zip(chunk, fx(x)):
                feats[i], ok[i] = f, True
                buffer = io.BytesIO()
                np.save(buffer, np.asarray(f, np.float32))
                write_atomic(key, buffer.getvalue())
        if progress:
            progress(len(paths) - len(todo) + min(start + batch_size, len(todo)), len(paths))
    return feats, ok, failed


def read_cache_entry(key: Path, dim: int):
    """A cache entry's features, or ``None`` when it is missing or unreadable (truncated, foreign, wrong size)."""
    if not key.exists():
        return None
    try:
        value = np.load(key, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    return value if value.shape == (dim,) and value.dtype == np.float32 else None


_cached = read_cache_entry  # the name older tests use
