"""Passes that make graphs from older exporters and other frameworks acceptable to onnx2tf.

Example:
    >>> upgrade_old_opset(model)      # an opset-9 model-zoo file -> opset 13
    1
    >>> sanitize_node_names(model)    # Paddle's 'Softmax@0' -> 'Softmax_0'
    3
"""

from __future__ import annotations

import re

from converter.logs import log

TARGET_OPSET = 13

# TensorFlow scope names: [A-Za-z0-9.][A-Za-z0-9_.\-/]* (onnx2tf names its layers after ONNX nodes).
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.\-/]")


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), TARGET_OPSET)


def upgrade_old_opset(model) -> int:
    """Convert a graph of opset < 13 to opset 13 with ``onnx.version_converter``.

    Old model-zoo files (IR 3, opset 9) end ``GlobalAveragePool -> Softmax`` with a
    ``[1, 1000, 1, 1]`` output; onnx2tf gets the opset-9 Softmax (over C*H*W after a
    2-D coercion) wrong there and TensorFlow returns all ones. The converter spells
    the old meanings out in opset-13 ops onnx2tf converts as ONNX defines them::

        Before::  opset 9:  y = Softmax(GlobalAveragePool(x) [1, 1000, 1, 1], axis=1)
        After::   opset 13: f = Flatten(p, axis=1);  s = Softmax(f, axis=1);  y = Reshape(s, [1, 1000, 1, 1])

    A graph the converter cannot upgrade is left as it was (``explicit_pre13_softmax``
    then handles its Softmax).
    """
    from onnx import version_converter

    if _opset(model) >= TARGET_OPSET:
        return 0
    try:
        upgraded = version_converter.convert_version(model, TARGET_OPSET)
    except Exception as e:  # an op without an adapter: keep the old opset
        log.debug("onnx.version_converter could not upgrade opset %s: %s", _opset(model), e)
        return 0
    upgraded.ir_version = max(upgraded.ir_version, 7)
    model.CopyFrom(upgraded)
    return 1


def rename_in_graph(graph, mapping: dict[str, str]) -> None:
    """Rename values everywhere in ``graph`` and its subgraphs: IO, value_info, initializers, node inputs/outputs."""
    for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
        vi.name = mapping.get(vi.name, vi.name)
    for init in graph.initializer:
        init.name = mapping.get(init.name, init.name)
    for node in graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
        for attr in node.attribute:
            for g in list(attr.graphs) + ([attr.g] if attr.g.ByteSize() else []):
                rename_in_graph(g, mapping)


def _all_names(graph):
    for node in graph.node:
        yield from node.output
        yield from node.input
        for attr in node.attribute:
            for g in list(attr.graphs) + ([attr.g] if attr.g.ByteSize() else []):
                yield from _all_names(g)
    yield from (i.name for i in graph.initializer)


def sanitize_node_names(model) -> int:
    """Replace characters TensorFlow refuses in scope names, in node and inner tensor names.

    PaddlePaddle exports name nodes and tensors like ``Softmax@0``; onnx2tf names its
    layers after them and stops ("'Softmax@0' is not a valid scope name")::

        Before::  node 'Softmax@0': y@0 = Softmax(x)
        After::   node 'Softmax_0': y_0 = Softmax(x)

    Graph inputs and outputs keep their names (the signature maps them separately).
    """
    io = {i.name for i in model.graph.input} | {o.name for o in model.graph.output}
    taken = set(_all_names(model.graph)) | io
    mapping = {}
    for name in sorted(set(_all_names(model.graph)) - io):
        if name and _BAD_CHARS.search(name):
            safe, k = _BAD_CHARS.sub("_", name), 1
            while safe in taken:
                k += 1
                safe = f"{_BAD_CHARS.sub('_', name)}_{k}"
            taken.add(safe)
            mapping[name] = safe
    count = len(mapping)
    rename_in_graph(model.graph, mapping)
    for node in all_nodes(model.graph):
        if node.name and _BAD_CHARS.search(node.name):
            node.name = _BAD_CHARS.sub("_", node.name)
            count += 1
    return count


def all_nodes(graph):
    """Every node of ``graph`` and of its subgraphs (If/Loop/Scan bodies), depth first."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for g in list(attr.graphs) + ([attr.g] if attr.g.ByteSize() else []):
                yield from all_nodes(g)
