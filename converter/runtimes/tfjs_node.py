"""Run a TF.js bundle in Node.js with the real ``@tensorflow/tfjs`` runtime.

Python writes golden inputs to a JSON request; ``js/run_bundle.mjs`` loads the
bundle with the wasm (or cpu) backend, runs it and writes the outputs back.

Example:
    >>> outs = run_bundle("out/tfjs", [{"image": x}], backend="wasm")
    >>> outs.samples[0]["logits"].shape
    (1, 1000)
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from converter.errors import InputError
from converter.runtimes.node import NodeRuntimeError, js_dir, node_executable
from converter.runtimes.tfjs_support import needs_execute_async

# TF.js tensors are float32, int32 or bool; wider types are narrowed on the way in.
_TO_TFJS = {"float64": "float32", "float16": "float32", "int64": "int32", "int8": "int32", "uint8": "int32", "int16": "int32"}


@dataclass
class BundleRun:
    """What the TF.js runtime returned: outputs per sample and facts about the model."""

    backend: str
    kind: str
    tfjs_version: str
    samples: list[dict]
    ops: list[str] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)


def _encode(a: np.ndarray) -> dict:
    a = np.asarray(a)
    dtype = _TO_TFJS.get(a.dtype.name, a.dtype.name)
    a = np.ascontiguousarray(a.astype(dtype))
    return {"dtype": "bool" if dtype == "bool" else dtype, "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode()}


def _decode(d: dict) -> np.ndarray:
    dtype = {"float32": np.float32, "int32": np.int32, "bool": np.uint8}[d["dtype"]]
    a = np.frombuffer(base64.b64decode(d["data"]), dtype=dtype).reshape(d["shape"])
    return a.astype(bool) if d["dtype"] == "bool" else a


def _needs_execute_async(bundle_dir) -> bool:
    try:
        return needs_execute_async(Path(bundle_dir) / "model.json")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False  # a missing or corrupt model.json: the runner reports it, naming the file


def run_bundle(bundle_dir, samples: list[dict], backend: str = "wasm", repeat: int = 0, timeout: float = 600) -> BundleRun:
    """Load ``bundle_dir`` in Node.js and run it on each sample.

    Args:
        bundle_dir: folder with ``model.json`` and its shards.
        samples: ``{input name: array}`` each, in the bundle's layout.
        backend: ``"wasm"`` (what users ship) or ``"cpu"``.
        repeat: after the first sample, time this many extra runs of it.

    Raises:
        InputError: the bundle's files are missing or corrupt (message names the file).
        NodeRuntimeError: TF.js could not load or run the model.
    """
    node = node_executable()
    with tempfile.TemporaryDirectory(prefix="transferjs-node-") as tmp:
        req, res = Path(tmp) / "request.json", Path(tmp) / "result.json"
        request = {
            "bundle": str(Path(bundle_dir).resolve()),
            "backend": backend,
            "executeAsync": _needs_execute_async(bundle_dir),
            "repeat": repeat,
            "samples": [{k: _encode(v) for k, v in s.items()} for s in samples],
        }
        req.write_text(json.dumps(request))
        proc = subprocess.run([node, str(js_dir() / "run_bundle.mjs"), str(req), str(res)], capture_output=True, text=True, timeout=timeout)
        if not res.exists():
            raise NodeRuntimeError(f"The TF.js runner crashed (exit {proc.returncode}):\n{proc.stderr.strip()[-2000:]}")
        result = json.loads(res.read_text())
    if not result["ok"]:
        if result["kind"] == "bundle":
            raise InputError(result["error"])
        raise NodeRuntimeError(f"TF.js ({backend} backend) failed on '{bundle_dir}': {result['error']}")
    return BundleRun(
        backend=result["backend"],
        kind=result["kind"],
        tfjs_version=result["tfjsVersion"],
        samples=[{k: _decode(v) for k, v in s.items()} for s in result["samples"]],
        ops=result["ops"],
        latency_ms=result["latency_ms"],
    )
