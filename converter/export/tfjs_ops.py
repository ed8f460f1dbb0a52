"""What the installed TF.js runtime can run, and the check every exported graph must pass.

``js/runtime_ops.mjs`` asks the runtime itself: the TF op names the tfjs-converter
graph executor maps, the kernels the wasm and cpu backends register, and the
activations the wasm backend fuses into ``FusedConv2D``/``_FusedMatMul``. The
answer is committed per TF.js version in ``tfjs_runtime/<version>.json`` (a test
regenerates it and compares); another installed version is asked once and cached.

Example:
    >>> check_runtime_support(Path("bundle/model.json"))   # raises UnsupportedOpsError
    >>> wasm_fusable_activations()
    {'Elu', 'LeakyRelu', 'Prelu', 'Relu', 'Relu6', 'Sigmoid'}
"""

from __future__ import annotations

import base64
import functools
import json
import os
import subprocess
from pathlib import Path

from converter.errors import UnsupportedOpsError

FUSED_OPS = {"_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedMatMul"}
_COMMITTED = Path(__file__).resolve().parent / "tfjs_runtime"
# TF op names of the activations the wasm enum lowercases (FusableActivation keys).
_TF_ACTIVATION_NAMES = {"relu": "Relu", "relu6": "Relu6", "prelu": "Prelu", "leakyrelu": "LeakyRelu", "sigmoid": "Sigmoid", "elu": "Elu"}


def installed_tfjs_version() -> str | None:
    """The ``@tensorflow/tfjs`` version in ``js/node_modules``, or ``None`` when not installed."""
    from converter.runtimes.tfjs_node import js_dir

    package = js_dir() / "node_modules" / "@tensorflow" / "tfjs" / "package.json"
    return json.loads(package.read_text())["version"] if package.is_file() else None


@functools.lru_cache(maxsize=None)
def runtime_support(version: str | None = None) -> dict:
    """The runtime's own answer (see ``js/runtime_ops.mjs``) for a TF.js version.

    Args:
        version: default the installed one; without one installed, the newest committed file.

    Raises:
        ConversionError: an uncached version, and the runtime could not be asked.
    """
    version = version or installed_tfjs_version()
    committed = _COMMITTED / f"{version}.json"
    if version is None:
        committed = max(_COMMITTED.glob("*.json"), key=lambda p: [int(x) for x in p.stem.split(".")])
    if committed.is_file():
        return json.loads(committed.read_text())
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "transferjs" / "tfjs_runtime" / f"{version}.json"
    if not cache.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(ask_runtime())
    return json.loads(cache.read_text())


def ask_runtime() -> str:
    """Run ``js/runtime_ops.mjs`` with the installed runtime; return its JSON text."""
    from converter.errors import ConversionError
    from converter.runtimes.tfjs_node import js_dir, node_executable

    proc = subprocess.run([node_executable(), str(js_dir() / "runtime_ops.mjs")], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise ConversionError(f"Asking the TF.js runtime for its ops failed (exit {proc.returncode}): {proc.stderr.strip()[-1000:]}")
    return proc.stdout


def wasm_fusable_activations() -> set[str]:
    """TF op names of the activations the wasm backend's fused kernels accept."""
    names = runtime_support()["fusable_activations"]["wasm"]
    return {_TF_ACTIVATION_NAMES.get(n, n) for n in names}


def converter_ops() -> set[str]:
    """TF op names the tfjs-converter graph executor can run."""
    return set(runtime_support()["converter_ops"])


def fused_ops_of(node: dict) -> list[str]:
    """A fused node's ``fused_ops`` attribute, decoded (``["BiasAdd", "Relu"]``)."""
    attr = node.get("attr", {}).get("fused_ops", {})
    return [base64.b64decode(s).decode() for s in attr.get("list", {}).get("s", [])]


def graph_nodes(model: dict):
    """Every node of a model.json topology: the main graph and the function library's bodies."""
    topology = model["modelTopology"]
    yield from topology.get("node", [])
    for fn in topology.get("library", {}).get("function", []):
        yield from fn.get("nodeDef", [])


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


def async_ops_in(model: dict) -> list[str]:
    """The ops of ``model`` that TF.js runs only in ``executeAsync`` (control flow, dynamic shapes)."""
    async_ops = set(runtime_support().get("async_ops", []))
    return sorted({node["op"] for node in graph_nodes(model)} & async_ops)


def needs_execute_async(model_json) -> bool:
    """Whether a graph model must be run with ``model.executeAsync`` (``execute`` refuses it)."""
    model = json.loads(Path(model_json).read_text())
    return "node" in model.get("modelTopology", {}) and bool(async_ops_in(model))


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
