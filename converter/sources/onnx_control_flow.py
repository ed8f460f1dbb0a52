"""ONNX control flow (``If``, ``Loop``, ``Scan``) made ready for onnx2tf, or refused early.

Example:
    >>> model, copied = copy_outer_initializers_into_branches(model)
    >>> copied
    2
"""

from __future__ import annotations


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
