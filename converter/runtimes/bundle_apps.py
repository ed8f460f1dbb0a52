"""Run a bundle's own apps as a user would: ``predict.mjs`` in Node.js, ``index.html`` in Chromium.

Example:
    >>> predict_with_node("out/tfjs", ["cat.jpg"])[0]["top"][0]["label"]
    'tabby'
    >>> classify_in_browser("out/tfjs", "cat.jpg", "page.png")["top"][0]["index"]
    281
    >>> serve_command("out/tfjs", port=8000)[1:]   # what `transferjs serve out/tfjs` runs
    ['out/tfjs/serve.mjs', '--port', '8000', '--host', '127.0.0.1']
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from converter.errors import InputError
from converter.runtimes.node import NodeRuntimeError, js_dir, node_executable


def _node_env() -> dict:
    # predict.mjs loads its packages with require(), which honours NODE_PATH:
    # the bundle needs no node_modules of its own when run from here.
    return {**os.environ, "NODE_PATH": str(js_dir() / "node_modules")}


def predict_with_node(bundle_dir, images, top: int = 5, backend: str = "wasm", partial: bool = False) -> list[dict]:
    """Run ``node BUNDLE/predict.mjs IMAGES --json``; return one ``{image, top}`` per image.

    Args:
        partial: return the answers for the readable images, and ``{image, error}`` for the others,
            instead of raising when some image is bad.

    Raises:
        InputError: no bundle there, a damaged bundle (e.g. ``metadata.json``), or bad images (predict.mjs exit 2).
        NodeRuntimeError: predict.mjs failed in the TF.js runtime (its message is included).
    """
    bundle = Path(bundle_dir)
    script = bundle / "predict.mjs"
    if not script.is_file():
        what = "no such folder" if not bundle.exists() else "not a folder" if not bundle.is_dir() else "no predict.mjs in it"
        raise InputError(f"Expected a TF.js bundle folder written by transferjs (model.json, metadata.json, "
                         f"predict.mjs). Received: '{bundle}' ({what})")
    node = node_executable()
    cmd = [node, str(script), *map(str, images), "--top", str(top), "--backend", backend, "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_node_env(), timeout=600)
    message = proc.stderr.strip()[-2000:]
    try:
        results = json.loads(proc.stdout)["results"]
    except (ValueError, KeyError, TypeError):
        results = None
    if proc.returncode == 2 and results is not None and partial:
        return results
    if proc.returncode == 2:
        raise InputError(message.removeprefix("error: "))
    if proc.returncode != 0 or results is None:
        raise NodeRuntimeError(f"predict.mjs failed (exit {proc.returncode}): {message}")
    return results


def chromium_executable() -> str:
    """Debian's Chromium (or $CHROMIUM); a clear error when it is missing."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        raise NodeRuntimeError("Chromium is not installed: `apt-get install chromium` (make test does this)")
    return path


def classify_in_browser(bundle_dir, image, screenshot, url: str | None = None) -> dict:
    """Open ``BUNDLE/index.html`` in headless Chromium, pick ``image``, return the page's top-5.

    The folder is served on a free local port, or, with ``url``, the page is loaded from that
    server (e.g. ``python3 -m http.server`` as the README says).

    Raises:
        NodeRuntimeError: the page failed to load the model or to classify.
    """
    return _chromium_script("browser_check.mjs", [str(bundle_dir), str(image), str(screenshot)], {"BUNDLE_URL": url} if url else {})


def _chromium_script(script: str, args: list[str], extra_env: dict) -> dict:
    """Run ``js/SCRIPT ARGS`` (a Playwright driver of headless Chromium) and return the JSON it prints last."""
    env = {**_node_env(), "CHROMIUM": chromium_executable(), **extra_env}
    proc = subprocess.run([node_executable(), str(js_dir() / script), *args], capture_output=True, text=True, env=env, timeout=300)
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise NodeRuntimeError(f"{script} failed: {proc.stderr.strip()[-2000:]}") from None
    if "error" in result:
        raise NodeRuntimeError(f"The page failed in Chromium: {result['error']} {result.get('pageErrors', '')}")
    return result


def serve_command(bundle_dir, port: int = 8000, host: str = "127.0.0.1") -> list[str]:
    """The command that serves ``bundle_dir``'s page cross-origin isolated: ``node BUNDLE/serve.mjs``.

    Raises:
        InputError: the folder has no ``serve.mjs`` and ``index.html`` (not a bundle, or an older one).
    """
    folder = Path(bundle_dir)
    missing = [n for n in ("serve.mjs", "index.html") if not (folder / n).is_file()]
    if missing:
        raise InputError(f"Expected a TF.js bundle folder with {' and '.join(missing)} (written by 'transferjs convert', "
                         f"'export' or 'retrain'; a tfjs-transfer folder works too). Received: '{bundle_dir}'")
    if not 0 <= port <= 65535:
        raise InputError(f"Expected --port from 0 to 65535. Received: {port}")
    return [node_executable(), str(folder / "serve.mjs"), "--port", str(port), "--host", host]


def drive_page(plan: dict, workdir) -> dict:
    """Run ``js/page_check.mjs`` with ``plan`` (see that file): the page driven in headless Chromium.

    Raises:
        NodeRuntimeError: the page failed to load or a step failed.
    """
    plan_file = Path(workdir) / "page-plan.json"
    plan_file.write_text(json.dumps(plan))
    return _chromium_script("page_check.mjs", [str(plan_file)], {})
