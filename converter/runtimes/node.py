"""The Node.js side of transferjs: where it lives and how to start it.

``js/`` (the runtime harness, its ``package.json`` and lock file) ships with the
package; its ``node_modules`` come from that lock file (``make setup`` in a checkout).

Example:
    >>> subprocess.run([node_executable(), str(js_dir() / "run_bundle.mjs"), req, res])
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from converter.errors import TransferJSError


class NodeRuntimeError(TransferJSError):
    """The TF.js runtime failed to load or run a bundle; the message is its own."""

    exit_code = 5


def js_dir() -> Path:
    """The Node.js side's folder (``js/`` beside the packages, or $TRANSFERJS_JS_DIR)."""
    return Path(os.environ.get("TRANSFERJS_JS_DIR", Path(__file__).resolve().parents[2] / "js"))


def node_executable() -> str:
    """``node`` on PATH, with ``@tensorflow/tfjs`` installed in ``js_dir()``.

    Raises:
        NodeRuntimeError: Node.js or the TF.js packages are missing.
    """
    node = shutil.which("node")
    if node is None:
        raise NodeRuntimeError("Node.js ('node') is not on PATH; it runs the TF.js verification. Install Node.js 20+.")
    if not (js_dir() / "node_modules" / "@tensorflow" / "tfjs").is_dir():
        raise NodeRuntimeError(f"@tensorflow/tfjs is not installed in '{js_dir()}'. Run: make setup (or: cd js && npm ci)")
    return node
