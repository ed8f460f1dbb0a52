"""ONNX control flow (``If``, ``Loop``, ``Scan``) made ready for onnx2tf, or refused early.

Outer initializers are copied into branches; an ``If`` on a scalar input (a sample rate)
is specialised to one value of it, and an ``If`` with a constant condition is replaced
by the branch it takes.

Example:
    >>> model, copied = copy_outer_initializers_into_branches(model)
    >>> copied
    2
    >>> specialise_scalar_ifs(model, {"sr": 8000})["sr"]["value"]
    8000
    >>> inline_constant_ifs(folded)
    1
"""

from __future__ import annotations

import json

from converter.errors import ConversionError
from converter.logs import log
from converter.sources.onnx_compat import rename_in_graph
from converter.sources.onnx_graph_query import const_value, producer
from converter.sources.onnx_shapes import _ONNX_DTYPES


def _subgraphs(node):
    for attr in node.attribute:
        yield from list(attr.graphs) + ([attr.g] if attr.g.ByteSize() else [])


def _copy_into(graph, outer_inits: dict, prefix: str) -> int:
    """Give ``graph`` (and its nested graphs) local Constants for the outer initializers it reads."""
    from onnx import helper

    local = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    local |= {o for n in graph.node for o in n.output}
    used = {name for n in graph.node for name in n.input if name} | {o.name for o in graph.output}
    wanted = sorted((used - local) & set(outer_inits))
    renamed = {name: f"{name}__{prefix}" for name in wanted}
    for node in graph.node:
        node.input[:] = [renamed.get(n, n) for n in node.input]
    for out in graph.output:
        if out.name in renamed:  # a branch that returns the initializer itself
            graph.node.append(helper.make_node("Identity", [renamed[out.name]], [out.name]))
    constants = [helper.make_node("Constant", [], [renamed[n]], name=renamed[n], value=outer_inits[n]) for n in wanted]
    for i, c in enumerate(constants):
        graph.node.insert(i, c)
    count = len(constants)
    inner = {**outer_inits, **{i.name: i for i in graph.initializer}}
    for node in graph.node:
        for k, sub in enumerate(_subgraphs(node)):
            count += _copy_into(sub, inner, f"{prefix}_{node.name or node.op_type}{k}")
    return count


def copy_outer_initializers_into_branches(model):
    """Copy the outer-scope initializers a subgraph reads into it as ``Constant`` nodes.

    ONNX lets an ``If`` branch (or a ``Loop`` body) read the main graph's
    initializers; onnx2tf looks names up in the branch alone and fails
    (``KeyError: 'two'``). A local, renamed copy is equivalent.

    Before::  initializer two;  If.then_branch: then_out = Mul(x, two)
    After::   initializer two;  If.then_branch: two__then = Constant(2.0);  then_out = Mul(x, two__then)

    Returns:
        ``(model, constants added)``; the model is changed in place.
    """
    inits = {i.name: i for i in model.graph.initializer}
    count = 0
    for node in model.graph.node:
        for k, sub in enumerate(_subgraphs(node)):
            count += _copy_into(sub, inits, f"{sub.name or node.name}{k}")
    return model, count


# metadata_props keys an exporter may write a scalar input's value under, by the input's name.
SCALAR_METADATA_ALIASES = {"sr": ("sr", "sample_rate", "sampling_rate"), "sample_rate": ("sample_rate", "sr", "sampling_rate"),
                           "sampling_rate": ("sampling_rate", "sample_rate", "sr")}


def _scalar_inputs(model) -> dict:
    """``{name: ValueInfo}`` of the rank-0 graph inputs that are not initializers."""
    inits = {i.name for i in model.graph.initializer}
    return {i.name: i for i in model.graph.input if i.name not in inits and i.type.tensor_type.HasField("shape")
            and len(i.type.tensor_type.shape.dim) == 0}


def _graph_inputs_behind(model, name: str, seen=None) -> set[str]:
    """The graph inputs (not initializers) a main-graph tensor depends on."""
    seen = set() if seen is None else seen
    if name in seen or not name:
        return set()
    seen.add(name)
    inits = {i.name for i in model.graph.initializer}
    if name in {i.name for i in model.graph.input} - inits:
        return {name}
    node = next((n for n in model.graph.node if name in n.output), None)
    if node is None:
        return set()
    return set().union(*[_graph_inputs_behind(model, i, seen) for i in node.input]) if node.input else set()


def _compared_constant(model, cond: str, scalar: str):
    """``C`` of ``cond = Equal(scalar, C)`` (either side, through Cast), else ``None``."""
    node = producer(model, cond)
    if node is None or node.op_type != "Equal":
        return None
    for a, b in ((node.input[0], node.input[1]), (node.input[1], node.input[0])):
        src = producer(model, a)
        while src is not None and src.op_type == "Cast":
            a, src = src.input[0], producer(model, src.input[0])
        value = const_value(model, b)
        if a == scalar and value is not None and value.size == 1:
            return value.ravel()[0].item()
    return None


def _metadata_value(model, name: str):
    """``(value, key)`` of ``name``'s value in ``metadata_props`` (by name or a known alias), else ``None``."""
    props = {p.key: p.value for p in model.metadata_props}
    for key in SCALAR_METADATA_ALIASES.get(name, (name,)):
        if key in props:
            try:
                return json.loads(props[key]), key
            except ValueError:
                continue
    return None


def _branches_agree(node) -> bool:
    """Do both branches of ``If`` ``node`` declare the same fully static output shapes?"""
    def shapes(graph):
        return [[d.dim_value if d.HasField("dim_value") else None for d in o.type.tensor_type.shape.dim]
                if o.type.tensor_type.HasField("shape") else None for o in graph.output]

    attrs = {a.name: a.g for a in node.attribute}
    then, other = shapes(attrs["then_branch"]), shapes(attrs["else_branch"])
    return then == other and all(s is not None and None not in s for s in then)


def _scalar_value(model, name: str, cond: str, values: dict):
    """``(value, origin)`` of scalar input ``name``: the --sample file, metadata, the constant compared with."""
    if name in values:
        return values[name], "the --sample file"
    meta = _metadata_value(model, name)
    if meta is not None:
        return meta[0], f"the model's metadata_props '{meta[1]}'"
    compared = _compared_constant(model, cond, name)
    if compared is not None:
        return compared, "the constant it is compared with"
    return None, None


def specialise_scalar_ifs(model, values: dict | None = None) -> dict:
    """Fix the scalar inputs that ``If`` conditions depend on alone, so each ``If`` has a constant condition.

    onnx2tf computes both branches of an ``If`` and selects one (``SelectV2``), which
    fails when the branches give different shapes (a sample-rate switch between two
    front-ends of different strides). With the scalar fixed, ``inline_constant_ifs``
    keeps the taken branch alone.

    Before::  inputs audio, sr;  c = Equal(sr, 16000);  y = If(c) {then: Conv k256} {else: Conv k128}
    After::   inputs audio;      sr = Constant(16000);  c = Equal(sr, 16000);  y = If(c) …

    The value comes from, in order: ``values`` (the ``--sample`` file), the model's
    ``metadata_props`` (the input's name, or ``sample_rate``/``sr``/``sampling_rate``),
    the constant the condition compares the input with (``Equal(sr, C)`` -> ``C``).

    Args:
        model: the ``onnx.ModelProto``, changed in place.
        values: ``{input name: value}`` from the user's sample.

    Returns:
        ``{input name: {"value": v, "from": origin, "if_nodes": [...]}}`` of what was fixed.

    An ``If`` whose value is found nowhere but whose branches give the same static
    shapes (a boolean switch between two heads of one size) is left as it is.

    Raises:
        ConversionError: an ``If`` depends on a scalar input whose value is found nowhere
            and whose branches may differ in shape; names the input, the node and ``--sample``.

    Example:
        >>> specialise_scalar_ifs(model, {})
        {'sr': {'value': 16000, 'from': 'the constant it is compared with', 'if_nodes': ['If_0']}}
    """
    import numpy as np
    from onnx import helper, numpy_helper

    values, scalars, fixed = dict(values or {}), _scalar_inputs(model), {}
    for node in [n for n in model.graph.node if n.op_type == "If"]:
        behind = _graph_inputs_behind(model, node.input[0])
        if len(behind) != 1 or not behind <= set(scalars) - set(fixed):
            continue
        (name,) = behind
        value, origin = _scalar_value(model, name, node.input[0], values)
        if value is None and _branches_agree(node):
            continue  # onnx2tf computes both branches and selects: fine when they give the same static shapes
        if value is None:
            raise ConversionError(
                f"The If node '{node.name or node.output[0]}' branches on the scalar input '{name}', whose value is "
                f"not known: transferjs keeps one branch per value. Give it with --sample FILE.npz (an array '{name}' "
                f"holding the value you will use), or write it into the model's metadata_props under '{name}'.")
        dtype = _ONNX_DTYPES.get(scalars[name].type.tensor_type.elem_type, "float32")
        model.graph.input.remove(scalars[name])
        const = numpy_helper.from_array(np.array(value, dtype=dtype), name)
        model.graph.node.insert(0, helper.make_node("Constant", [], [name], name=f"{name}/fixed", value=const))
        fixed[name] = {"value": np.asarray(value).item(), "from": origin, "if_nodes": [node.name or node.output[0]]}
        log.warning("Input '%s' fixed at %s (from %s): the If '%s' branches on it", name, fixed[name]["value"], origin, node.name)
    if fixed:
        model.metadata_props.add(key="transferjs.fixed_inputs", value=json.dumps(fixed))
    return fixed


def _local_names(graph) -> set[str]:
    """Every name a graph defines: node outputs, initializers, and the same in its subgraphs (with their inputs)."""
    names = {o for n in graph.node for o in n.output if o} | {i.name for i in graph.initializer}
    for n in graph.node:
        for sub in _subgraphs(n):
            names |= _local_names(sub) | {i.name for i in sub.input}
    return names


def _inline_branch(model, node, branch, at: int) -> None:
    """Put ``branch``'s nodes in place of the ``If`` ``node``: its outputs renamed to the If's, the rest prefixed."""
    from onnx import helper

    prefix = (node.name or node.output[0]) + "/"
    local = _local_names(branch)
    mapping = {name: prefix + name for name in local}
    mapping.update({out.name: mine for out, mine in zip(branch.output, node.output) if out.name in local})
    rename_in_graph(branch, mapping)
    for init in branch.initializer:
        model.graph.initializer.append(init)
    new = list(branch.node)
    for k, (out, mine) in enumerate(zip(branch.output, node.output)):
        if not any(mine in n.output for n in new):  # a branch that returns an outer tensor as it is
            new.append(helper.make_node("Identity", [out.name], [mine], name=f"{prefix}identity_{k}"))
    for n in new:
        n.name = prefix + n.name if n.name else ""
    model.graph.node.remove(node)
    for k, n in enumerate(new):
        model.graph.node.insert(at + k, n)


def inline_constant_ifs(model) -> int:
    """Replace each ``If`` whose condition is a constant by the nodes of the branch it takes.

    Before::  c = initializer True;  y = If(c) {then: t = Conv(x, w1); out t} {else: …}
    After::   y = Conv(x, w1)     (branch-local names prefixed with the If's name)

    onnx2tf converts an ``If`` by computing both branches and selecting one; with the
    condition known (a fixed sample rate, see ``specialise_scalar_ifs``), only the taken
    branch is converted, whatever shape the other would give.
    """
    count = 0
    while True:
        found = next(((k, n, const_value(model, n.input[0])) for k, n in enumerate(model.graph.node)
                      if n.op_type == "If" and const_value(model, n.input[0]) is not None), None)
        if found is None:
            return count
        at, node, cond = found
        attrs = {a.name: a.g for a in node.attribute}
        _inline_branch(model, node, attrs["then_branch"] if bool(cond.ravel()[0]) else attrs["else_branch"], at)
        count += 1
