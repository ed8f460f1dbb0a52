"""The check every exported graph must pass: can the installed TF.js runtime run each node?

What the runtime can run is its own answer (``converter.runtimes.tfjs_support``);
this module holds the rules that read a ``model.json`` against it.

Example:
    >>> check_runtime_support(Path("bundle/model.json"))   # raises UnsupportedOpsError
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from converter.errors import UnsupportedOpsError
from converter.runtimes.tfjs_support import graph_nodes, runtime_support, wasm_fusable_activations

FUSED_OPS = {"_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedMatMul"}


def fused_ops_of(node: dict) -> list[str]:
    """A fused node's ``fused_ops`` attribute, decoded (``["BiasAdd", "Relu"]``)."""
    attr = node.get("attr", {}).get("fused_ops", {})
    return [base64.b64decode(s).decode() for s in attr.get("list", {}).get("s", [])]


def fused_node_problem(node: dict, fusable: set[str]) -> str | None:
    """Why the TF.js executor and wasm kernels cannot run a fused node as written, or ``None``.

    The executor reads only ``fused_ops[0]`` (BiasAdd) and ``fused_ops[1]`` (the
    activation); anything else is refused or silently dropped.
    """
    fused = fused_ops_of(node)
    if not fused:
        return None
    if fused[0] != "BiasAdd" or len(fused) > 2:
        return f"fused_ops={'+'.join(fused)} (TF.js runs BiasAdd plus at most one activation)"
    if len(fused) == 2 and fused[1] not in fusable:
        return f"fused activation {fused[1]} (the wasm backend fuses {', '.join(sorted(fusable))})"
    num_args = int(node.get("attr", {}).get("num_args", {}).get("i", "1"))
    if num_args != (2 if fused[-1] == "Prelu" else 1):
        return f"fused_ops={'+'.join(fused)} with num_args={num_args}"
    return None


def unsupported_ops(model: dict, backend: str = "wasm") -> dict[str, list[str]]:
    """``{problem: node names}`` for every node the runtime cannot run; empty when all can.

    A node fails when the graph executor has no mapping for its op, when its op
    is a kernel the cpu backend has but ``backend`` lacks (Einsum, FFT, … on wasm),
    or when it is a fused conv/matmul whose ``fused_ops`` the runtime does not run.
    """
    support = runtime_support()
    known = set(support["converter_ops"])
    kernels = set(support["kernels"].get(backend, []))
    missing_kernels = set(support["kernels"]["cpu"]) - kernels
    fusable = wasm_fusable_activations()
    weights = {w["name"]: w for group in model.get("weightsManifest", []) for w in group["weights"]}
    problems: dict[str, list[str]] = {}
    for node in graph_nodes(model):
        op = node["op"]
        if op not in known:
            problems.setdefault(op, []).append(node["name"])
        elif op in missing_kernels:
            problems.setdefault(f"{op} (no {backend} kernel)", []).append(node["name"])
        elif op in FUSED_OPS:
            why = fused_node_problem(node, fusable)
            bias = weights.get(node.get("input", [None] * 3)[2].split(":")[0]) if len(node.get("input", [])) > 2 else None
            if why is None and bias is not None and len(bias["shape"]) != 1:
                why = f"rank-{len(bias['shape'])} bias (the wasm backend takes rank 1)"
            if why:
                problems.setdefault(f"{op} with {why}", []).append(node["name"])
    return problems


def check_runtime_support(model_json: Path, backend: str = "wasm") -> None:
    """Refuse a graph model the installed TF.js runtime cannot run, listing every problem at once.

    Raises:
        UnsupportedOpsError: op (or fused-op combination) -> the nodes where it occurs.
    """
    model = json.loads(Path(model_json).read_text())
    problems = unsupported_ops(model, backend)
    if problems:
        version = runtime_support()["tfjs"]
        raise UnsupportedOpsError(f"TF.js {version} ({backend} backend)", problems)
