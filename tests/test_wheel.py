"""The wheel works outside the checkout: convert, export, verify, predict and retrain from an installed package.

The wheel is built from this tree and installed (``--no-deps``) into a fresh venv whose
dependencies come from the project's venv (a ``.pth`` line: the same pinned stack, no
download). Everything runs from a folder outside the checkout with a fresh cache, so the
Node.js side is installed from the wheel's own ``package-lock.json`` on first use
(``npm ci --prefer-offline``: npm's cache serves the locked packages).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def _run(cmd, cwd, env, timeout=900) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv bin folder, environment, work folder) of the wheel installed outside the checkout."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy of the tracked sources: no stale build/ output of an earlier build can slip in.
    tree = root / "src"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, tree / name)
    for name in ("converter", "retrain", "transferjs"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    (tree / "js").mkdir()
    for f in list((ROOT / "js").glob("*.mjs")) + [ROOT / "js" / "package.json", ROOT / "js" / "package-lock.json"]:
        shutil.copyfile(f, tree / "js" / f.name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", root / "dist", tree], root, os.environ)
    (wheel,) = (root / "dist").glob("transferjs-*.whl")
    _run([sys.executable, "-m", "venv", root / "venv"], root, os.environ)
    site = next((root / "venv" / "lib").glob("python3*/site-packages"))
    (site / "transferjs-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([root / "venv" / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", wheel], root, os.environ)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRANSFERJS_", "PYTHONPATH"))}
    env.update(XDG_CACHE_HOME=str(root / "cache"), TF_ENABLE_ONEDNN_OPTS="0")
    work = root / "work"
    work.mkdir()
    return root / "venv" / "bin", env, work, wheel


def test_the_wheel_carries_the_templates_runtime_answers_and_node_side(installed):
    names = set(zipfile.ZipFile(installed[3]).namelist())
    for name in ("converter/export/templates/predict.mjs", "converter/export/templates/index.html",
                 "converter/runtimes/tfjs_runtime/4.22.0.json", "converter/runtimes/js/run_bundle.mjs",
                 "converter/runtimes/js/package-lock.json", "transferjs/cli.py"):
        assert name in names
    # Every package of the tree is in the wheel (pyproject lists them; a new one must be added there).
    packages = {str(p.parent.relative_to(ROOT)).replace("/", ".") for pkg in ("converter", "retrain", "transferjs")
                for p in (ROOT / pkg).rglob("__init__.py")}
    assert packages <= {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("__init__.py")}


def test_installed_wheel_converts_exports_verifies_predicts_and_retrains(installed, tiny_onnx, photos):
    from PIL import Image

    bin_dir, env, work, _ = installed
    where = _run([bin_dir / "python", "-c", "import converter, retrain; print(converter.__file__, retrain.__file__)"], work, env)
    assert str(ROOT) not in where.stdout and "site-packages" in where.stdout
    convert = _run([bin_dir / "transferjs", "convert", tiny_onnx, "-o", work / "out"], work, env)
    assert "Installing transferjs' Node.js side once" in convert.stderr
    assert (Path(env["XDG_CACHE_HOME"]) / "transferjs" / "js").is_dir()
    _run([bin_dir / "transferjs", "export", work / "out", "-o", work / "f16", "--quantize", "float16"], work, env)
    _run([bin_dir / "transferjs", "verify", work / "out"], work, env)
    predicted = _run([bin_dir / "transferjs", "predict", work / "out" / "tfjs", photos["chelsea"][0]], work, env)
    assert "chelsea.png" in predicted.stdout
    rng = np.random.default_rng(0)
    for label, color in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (work / "data" / label).mkdir(parents=True)
        for i in range(10):
            pixels = np.clip(rng.normal(color, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(work / "data" / label / f"{i}.png")
    _run([bin_dir / "transferjs", "retrain", work / "out", "--data", work / "data", "-o", work / "colors",
          "--no-progress", "--epochs", "30", "--cache-dir", work / "features"], work, env)
    result = _run([bin_dir / "transferjs", "predict", work / "colors" / "tfjs", work / "data" / "red" / "0.png", "--top", "1"], work, env)
    assert "red" in result.stdout.splitlines()[1]
