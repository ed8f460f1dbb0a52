"""Expand ONNX ops onnx2tf cannot convert into their ONNX function bodies.

Many ONNX ops (``LayerNormalization``, ``RMSNormalization``, ``Attention``,
``CastLike``, the losses, the activations of opset 18+) are defined by the standard
as a function of primitive ops. Where onnx2tf has no converter for the op, or
converts it wrongly (``MEASURED_WRONG``), the node is replaced by that body, as
onnx's own ``*_expanded`` test cases are built.

Example:
    >>> expand_functions(model)   # one RMSNormalization -> ReduceMean, Add, Sqrt, Div, Mul...
    1
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from converter.logs import log

# Ops onnx2tf 1.28.8 has a converter for that fails on the op itself, measured on
# ONNX's backend node tests (docs/onnx-conformance.md); their bodies convert.
MEASURED_WRONG = {
    "LayerNormalization": "KeyError 'Mean' or a tf.constant of a tensor, 0 of 19 cases; its body 38 of 38",
}
_STANDARD_DOMAINS = ("", "ai.onnx")
_MAX_ROUNDS = 6  # a body may hold ops with bodies of their own (SoftmaxCrossEntropyLoss -> NLLLoss -> CastLike)


@functools.lru_cache(maxsize=1)
def onnx2tf_op_types() -> frozenset[str]:
    """Op types onnx2tf has a converter module for, found without importing it (that loads TensorFlow).

    Example:
        >>> "Conv" in onnx2tf_op_types()
        True
    """
    package = Path(importlib.util.find_spec("onnx2tf").submodule_search_locations[0])
    return frozenset(p.stem for p in (package / "ops").glob("*.py"))


def _domain_versions(model) -> dict[str, int]:
    versions = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    return versions


def _schema(node, versions: dict[str, int]):
    import onnx.defs

    domain = "" if node.domain in _STANDARD_DOMAINS else node.domain
    if domain not in versions:
        return None
    try:
        return onnx.defs.get_schema(node.op_type, versions[domain], domain)
    except onnx.defs.SchemaError:
        return None


def wants_expansion(node, versions: dict[str, int]) -> bool:
    """True when onnx2tf cannot take ``node`` as it is and the standard defines it by a function.

    Args:
        node: an ``onnx.NodeProto``.
        versions: ``{domain: opset version}`` of the model ("" for the standard domain).
    """
    standard = node.domain in _STANDARD_DOMAINS
    if standard and node.op_type in onnx2tf_op_types() and node.op_type not in MEASURED_WRONG:
        return False
    if not standard and node.domain != "ai.onnx.preview":
        return False
    schema = _schema(node, versions)
    return schema is not None and (schema.has_function or schema.has_context_dependent_function)


def _function(node, schema, version: int, types: dict):
    """The schema's ``FunctionProto`` for opset ``version``, or ``None`` (no body that fits)."""
    from onnx import FunctionProto, TypeProto

    plain = [v for v in schema.function_opset_versions if v <= version]
    context = [v for v in schema.context_dependent_function_opset_versions if v <= version]
    proto = FunctionProto()
    if plain and (not context or max(plain) >= max(context)):
        proto.ParseFromString(schema.get_function_with_opset_version(max(plain)))
        return proto
    if not context:
        return None
    if any(name and name not in types for name in node.input):
        return None  # a context-dependent body needs every input's type
    input_types = [types[name].SerializeToString() if name else TypeProto().SerializeToString() for name in node.input]
    data = schema.get_context_dependent_function_with_opset_version(max(context), node.SerializeToString(), input_types)
    proto.ParseFromString(data)
    return proto if proto.node else None


def _value_types(model) -> dict:
    """``{tensor name: TypeProto}`` from ONNX shape inference, initializers included."""
    import onnx
    from onnx import helper

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a graph inference rejects: fall back to what the model declares
        inferred = model
    types = {vi.name: vi.type for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    for init in model.graph.initializer:
        types[init.name] = helper.make_tensor_type_proto(init.data_type, list(init.dims))
    return types


def _body_nodes(node, schema, function, prefix: str) -> list | None:
    """The function's nodes wired to ``node``'s inputs, outputs and attributes; ``None`` if it holds subgraphs."""
    from onnx import AttributeProto, NodeProto

    attributes = {a.name: a for a in function.attribute_proto}
    attributes.update({name: a.default_value for name, a in schema.attributes.items() if a.default_value.ByteSize()})
    attributes.update({a.name: a for a in node.attribute})
    names = {formal: node.input[k] if k < len(node.input) else "" for k, formal in enumerate(function.input)}
    names.update({formal: node.output[k] for k, formal in enumerate(function.output) if k < len(node.output) and node.output[k]})

    def rename(name: str) -> str:
        return names.get(name, prefix + name if name else "")

    nodes = []
    for k, inner in enumerate(function.node):
        new = NodeProto()
        new.CopyFrom(inner)
        del new.input[:], new.output[:], new.attribute[:]
        new.input.extend(rename(n) for n in inner.input)
        new.output.extend(rename(n) for n in inner.output)
        new.name = f"{prefix}{inner.name or inner.op_type + '_' + str(k)}"
        for attr in inner.attribute:
            if attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
                return None
            if attr.ref_attr_name:
                if attr.ref_attr_name not in attributes:
                    continue  # an optional attribute the node left out
                value = AttributeProto()
                value.CopyFrom(attributes[attr.ref_attr_name])
                value.name = attr.name
                new.attribute.append(value)
            else:
                new.attribute.append(attr)
        nodes.append(new)
    return nodes


def _expand_round(model, versions: dict[str, int]) -> int:
    candidates = [n for n in model.graph.node if wants_expansion(n, versions)]
    if not candidates:
        return 0
    types = _value_types(model)
    count = 0
    for node in candidates:
        schema = _schema(node, versions)
        domain = "" if node.domain in _STANDARD_DOMAINS else node.domain
        function = _function(node, schema, versions[domain], types)
        index = list(model.graph.node).index(node)
        nodes = function and _body_nodes(node, schema, function, f"{node.name or node.op_type}_{index}/{node.op_type}/")
        if not nodes:
            continue
        model.graph.node.remove(node)
        for k, new in enumerate(nodes):
            model.graph.node.insert(index + k, new)
        count += 1
    return count


def expand_functions(model) -> int:
    """Replace nodes onnx2tf cannot convert by their ONNX function bodies (in place); return how many.

    Before::  y = RMSNormalization(x, scale, axis=-1, epsilon=1e-5)
    After::   x2 = Mul(x, x);  m = ReduceMean(x2, axes);  r = Sqrt(Add(m, epsilon))
              y = Mul(Div(x, r), scale)        (the body of onnx.defs' RMSNormalization)

    Ops onnx2tf converts are left alone, so a CNN's graph costs one scan of its nodes.
    Bodies holding ops with bodies of their own are expanded again, up to a few rounds.
    """
    versions = _domain_versions(model)
    versions.setdefault("", 13)
    total = 0
    for _ in range(_MAX_ROUNDS):
        count = _expand_round(model, versions)
        if not count:
            break
        total += count
    if total:
        _fold_bodies(model, versions)
    return total


def _fold_bodies(model, versions: dict[str, int]) -> None:
    """Fold the shape arithmetic of the inlined bodies (``Shape -> Size -> Range`` axes) into constants.

    onnx2tf needs constant axes and shapes. onnxsim's graph optimizations also drop
    the bodies' no-op Reshapes (5-D ones onnx2tf refuses in Attention), but can fuse a
    body back into its op (RMSNormalization): then the fold runs without them.
    """
    import onnxsim

    for optimize in (True, False):
        try:
            folded, ok = onnxsim.simplify(model, check_n=0, perform_optimization=optimize)
        except Exception as e:  # keep the unfolded bodies; onnx2tf then says what it cannot take
            log.debug("folding the expanded function bodies failed: %s", e)
            continue
        if ok and not any(wants_expansion(n, versions) for n in folded.graph.node):
            model.CopyFrom(folded)
            return
