"""What the installed TF.js runtime can run, asked from the runtime itself.

``js/runtime_ops.mjs`` reports the TF op names the tfjs-converter graph executor
maps, the kernels the wasm and cpu backends register, the ops that need
``executeAsync``, and the activations the wasm backend fuses into
``FusedConv2D``/``_FusedMatMul``. The answer is committed per TF.js version in
``tfjs_runtime/<version>.json`` (a test regenerates it and compares); another
installed version is asked once and cached.

Example:
    >>> wasm_fusable_activations()
    {'Elu', 'LeakyRelu', 'Prelu', 'Relu', 'Relu6', 'Sigmoid'}
    >>> needs_execute_async("bundle/model.json")
    False
"""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

from converter.atomic import write_atomic
from converter.cache import cache_root
from converter.errors import ConversionError
from converter.runtimes.node import js_dir, node_executable

_COMMITTED = Path(__file__).resolve().parent / "tfjs_runtime"
# TF op names of the activations the wasm enum lowercases (FusableActivation keys).
_TF_ACTIVATION_NAMES = {"relu": "Relu", "relu6": "Relu6", "prelu": "Prelu", "leakyrelu": "LeakyRelu", "sigmoid": "Sigmoid", "elu": "Elu"}


def installed_tfjs_version() -> str | None:
    """The ``@tensorflow/tfjs`` version in ``js/node_modules``, or ``None`` when not installed."""
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
    cache = cache_root() / "tfjs_runtime" / f"{version}.json"
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):  # missing, or cut short by a kill: ask again
        pass
    text = ask_runtime()
    cache.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(cache, text.encode())
    return json.loads(text)


def ask_runtime() -> str:
    """Run ``js/runtime_ops.mjs`` with the installed runtime; return its JSON text."""
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


def graph_nodes(model: dict):
    """Every node of a model.json topology: the main graph, the function library's bodies and the
    initializer graph (run once at load)."""
    topology = model["modelTopology"]
    yield from topology.get("node", [])
    yield from (model.get("modelInitializer") or {}).get("node", [])
    for fn in topology.get("library", {}).get("function", []):
        yield from fn.get("nodeDef", [])


def async_ops_in(model: dict) -> list[str]:
    """The ops of ``model`` that TF.js runs only in ``executeAsync`` (control flow, dynamic shapes)."""
    async_ops = set(runtime_support().get("async_ops", []))
    return sorted({node["op"] for node in graph_nodes(model)} & async_ops)


def needs_execute_async(model_json) -> bool:
    """Whether a graph model must be run with ``model.executeAsync`` (``execute`` refuses it)."""
    model = json.loads(Path(model_json).read_text())
    return "node" in model.get("modelTopology", {}) and bool(async_ops_in(model))
