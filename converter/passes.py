"""Running a list of graph passes in order: the one loop the ONNX and TF.js pass lists share.

A pass is a function that rewrites a graph in place and returns how many places it changed.

Example:
    >>> applied = run_in_order([fold_constants, remove_dead_nodes], model, disabled={"fold_constants"}, kind="ONNX")
    >>> applied
    {'remove_dead_nodes': 3}
"""

from __future__ import annotations

from converter.errors import ConversionError


def run_in_order(passes, graph, disabled=(), kind: str = "graph") -> dict[str, int]:
    """Run ``passes`` on ``graph`` (in place), skipping those named in ``disabled``; return the
    count each one changed (passes that changed nothing are left out).

    A pass that raises on an unusual graph becomes a ``ConversionError`` that names it
    (stage ``"passes"``), not a traceback.
    """
    applied = {}
    for p in passes:
        if p.__name__ in disabled:
            continue
        try:
            n = p(graph)
        except Exception as e:
            raise ConversionError(f"The {kind} pass {p.__name__} failed: {type(e).__name__}: {str(e).strip()[:300]}",
                                  stage="passes") from e
        if n:
            applied[p.__name__] = n
    return applied
