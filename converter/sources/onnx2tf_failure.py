"""What a failed onnx2tf run tells a transferjs user: the node, its op and shapes, our options.

onnx2tf's own log ends with advice about its own flags (``-b``, ``-ois``, ``-kt``,
``-onwdt``) that a transferjs user cannot pass, and it lives in a temporary folder.
The full log is kept in the cache folder; the message names the failing node in
the graph onnx2tf got and the transferjs options that change what it gets.

Example:
    >>> path = keep_log(output)            # ~/.cache/transferjs/logs/onnx2tf-….log
    >>> explain_failure(model, verdict, path)
    "onnx2tf could not convert node '/up/ConvTranspose' (ConvTranspose, inputs [?, 8, 4, 4]) …"
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from converter.cache import cache_root

# Lines of onnx2tf's log that advise its own command-line flags.
_ONNX2TF_ADVICE = re.compile(r"-b or -ois|-kt or -kat|-onwdt|parameter-replacement|Read this and deal with it|"
                             r"input_onnx_file_path:|auto_generate_json|Attempting automatic JSON", re.I)


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def keep_log(text: str, stem: str = "model") -> Path:
    """Write onnx2tf's full log to ``cache_root()/logs/`` (it outlives the conversion's temp folder)."""
    folder = cache_root() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", stem)[:60] or "model"
    path = folder / f"onnx2tf-{safe}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    path.write_text(strip_ansi(text))
    return path


def _node_facts(model, name: str | None) -> str:
    """``'name' (Op, inputs [shapes])`` for the node onnx2tf stopped at, from ONNX shape inference."""
    import onnx

    node = next((n for n in model.graph.node if name and (n.name == name or re.sub("^wa/", "/", name) == n.name)), None)
    if node is None:
        return f"'{name}'" if name else "(unknown node)"
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        inferred = model
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input):
        dims = vi.type.tensor_type.shape.dim
        shapes[vi.name] = "[" + ", ".join(str(d.dim_value) if d.HasField("dim_value") else "?" for d in dims) + "]"
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    ins = [shapes.get(i) or (f"const {inits[i]}" if i in inits else "?") for i in node.input if i]
    return f"'{node.name}' ({node.op_type}, inputs {', '.join(ins)})"


def _error_lines(verdict: dict, log_text: str) -> list[str]:
    """The error itself: the verdict's message, else the last ERROR lines of the log, without onnx2tf's advice."""
    lines = [ln.strip() for ln in strip_ansi(verdict.get("error") or "").splitlines() if ln.strip()]
    if not lines or lines[0].startswith("onnx2tf exited"):
        errors = [ln.strip() for ln in strip_ansi(log_text).splitlines() if "ERROR" in ln or "Error" in ln]
        lines = lines + errors[-4:]
    return [ln[:400] for ln in lines if not _ONNX2TF_ADVICE.search(ln)][:6]


def explain_failure(model, verdict: dict, log_text: str, log_path: Path, dynamic: dict) -> str:
    """The ``ConversionError`` message for a failed onnx2tf run, in transferjs terms."""
    where = _node_facts(model, verdict.get("node"))
    error = "\n  ".join(_error_lines(verdict, log_text)) or "(no error message)"
    hints = []
    if "is not a valid scope name" in error or "is not a valid scope name" in strip_ansi(log_text):
        hints.append("node names hold characters TensorFlow refuses in scope names (such as '@'): keep the ONNX pass "
                     "sanitize_node_names on (it renames them; do not --disable-pass it)")
    if dynamic:
        names = ", ".join(f"{k} dims {sorted(v)}" for k, v in dynamic.items())
        hints.append(f"fix the dynamic input dims ({names}) with --input-shape NAME:D0,D1,… or --sample FILE.npz")
    hints.append("--keep-layout keeps NCHW tensors as they are (for tensors that are not images)")
    hints.append("--disable-pass NAME skips one of transferjs' ONNX passes (`transferjs passes` lists them)")
    return (f"onnx2tf could not convert node {where}:\n  {error}\nWhat can help:\n  - " + "\n  - ".join(hints)
            + f"\nFull onnx2tf log: {log_path}")
