"""The Node.js side of transferjs: where it lives and how to start it.

``js/`` holds the runtime harness (``run_bundle.mjs``, ``runtime.mjs``, …), its
``package.json`` and ``package-lock.json``. In a checkout that is the repository's
``js/`` (``make setup`` installs its ``node_modules``). An installed wheel carries the
same files as ``converter/runtimes/js/``; on first use they are copied into the cache
(``cache_root()/js/<lock hash>``) and ``npm ci`` installs exactly the locked packages
there, once, saying so on stderr.

Example:
    >>> subprocess.run([node_executable(), str(js_dir() / "run_bundle.mjs"), req, res])
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from converter.cache import cache_root
from converter.errors import TransferJSError
from converter.logs import log

_CHECKOUT_JS = Path(__file__).resolve().parents[2] / "js"
_PACKAGED_JS = Path(__file__).resolve().parent / "js"


class NodeRuntimeError(TransferJSError):
    """The TF.js runtime failed to load or run a bundle; the message is its own."""

    exit_code = 5


def js_dir() -> Path:
    """The Node.js side's folder: ``$TRANSFERJS_JS_DIR``, a checkout's ``js/``, else the installed copy in the cache."""
    if os.environ.get("TRANSFERJS_JS_DIR"):
        return Path(os.environ["TRANSFERJS_JS_DIR"])
    if (_CHECKOUT_JS / "package-lock.json").is_file():
        return _CHECKOUT_JS
    lock = (_PACKAGED_JS / "package-lock.json").read_bytes()
    return cache_root() / "js" / hashlib.sha256(lock).hexdigest()[:12]


def js_file(name: str) -> Path:
    """A file of the Node.js side (e.g. ``runtime.mjs``, copied into bundles), without installing anything.

    Example:
        >>> shutil.copyfile(js_file("runtime.mjs"), bundle / "runtime.mjs")
    """
    if os.environ.get("TRANSFERJS_JS_DIR"):
        return Path(os.environ["TRANSFERJS_JS_DIR"]) / name
    return (_CHECKOUT_JS if (_CHECKOUT_JS / "package-lock.json").is_file() else _PACKAGED_JS) / name


def install_node_side(folder: Path) -> None:
    """Copy the packaged ``js/`` files into ``folder`` and ``npm ci`` the locked runtime packages there.

    Raises:
        NodeRuntimeError: npm is missing or the install failed (its last words included).
    """
    npm = shutil.which("npm")
    if npm is None:
        raise NodeRuntimeError("npm is not on PATH; it installs transferjs' locked TF.js packages once. Install Node.js 20+.")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(_PACKAGED_JS, partial, ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
    log.warning("Installing transferjs' Node.js side once (the TF.js packages pinned in its package-lock.json) into %s", folder)
    proc = subprocess.run([npm, "ci", "--omit=dev", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"],
                          cwd=partial, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise NodeRuntimeError(f"npm ci in '{partial}' failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)


def node_executable() -> str:
    """``node`` on PATH, with ``@tensorflow/tfjs`` installed in ``js_dir()``.

    Raises:
        NodeRuntimeError: Node.js or the TF.js packages are missing.
    """
    node = shutil.which("node")
    if node is None:
        raise NodeRuntimeError("Node.js ('node') is not on PATH; it runs the TF.js verification. Install Node.js 20+.")
    folder = js_dir()
    if not (folder / "node_modules" / "@tensorflow" / "tfjs").is_dir():
        if folder == _CHECKOUT_JS or os.environ.get("TRANSFERJS_JS_DIR"):
            raise NodeRuntimeError(f"@tensorflow/tfjs is not installed in '{folder}'. Run: make setup (or: cd js && npm ci)")
        install_node_side(folder)
    return node


def node_modules_dir() -> Path:
    """``js_dir()/node_modules``, installed first when missing (see ``node_executable``)."""
    node_executable()
    return js_dir() / "node_modules"
