"""Every command the README shows is run here, verbatim, or mapped to the test that runs it.

README.md's fenced blocks are parsed, not copied: plain ``` blocks are shell, ```python blocks
are Python (```text and other info strings are prose). Each ``.venv/bin/transferjs …`` line runs
in order in one working directory that holds the input files the README names (``model.onnx``,
``model.pt2``, ``classifier.keras``, ``traced.pt``, ``weights.pth``, ``cat.jpg``, ``photos/``),
made from the project's own fixtures; then each Python block runs as a script there. Any other
command must appear in ``RUN_ELSEWHERE``, so the README cannot show a command no test runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

README = ROOT / "README.md"
TRANSFERJS = ".venv/bin/transferjs"

# README commands that are not ``transferjs`` calls: the command's first words -> what runs it.
RUN_ELSEWHERE = {
    "make demo": "tests/test_demo.py",  # `make demo` is `python -m transferjs.demo`, run there on a slice of the data
    "make test": ".ci/run",  # CI runs exactly `make test`
}
# Shown inline in the README's prose, run by test_readme_page_and_predict_commands_work below:
# `node predict.mjs cat.jpg` in a bundle folder and `python3 -m http.server -d BUNDLE PORT`, then the page.
# (`npm install` in a bundle folder is not run: it needs the registry; NODE_PATH gives it js/node_modules.)

def readme_blocks(text: str) -> list[tuple[str, str]]:
    """``(info string, body)`` of every fenced block of a Markdown text, in order."""
    return [(m.group(1).strip(), m.group(2)) for m in re.finditer(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", text, re.M | re.S)]


def shell_commands(body: str) -> list[list[str]]:
    """The argv of each command of a shell block: backslash continuations joined, ``#`` comments dropped."""
    joined = re.sub(r"\\\n", " ", body)
    return [argv for line in joined.splitlines() if (argv := shlex.split(line, comments=True))]


def readme_commands() -> tuple[list[list[str]], list[str]]:
    """The README's shell commands (argv) and its Python blocks, in order."""
    shell, python = [], []
    for info, body in readme_blocks(README.read_text()):
        if info == "python":
            python.append(body)
        elif info in ("", "sh", "bash", "shell"):
            shell.extend(shell_commands(body))
    return shell, python


def _elsewhere(argv: list[str]) -> str | None:
    line = shlex.join(argv)
    return next((where for start, where in RUN_ELSEWHERE.items() if line == start or line.startswith(start + " ")), None)


def test_every_readme_command_is_run_here_or_mapped():
    shell, python = readme_commands()
    assert any(argv[0] == TRANSFERJS for argv in shell) and python, "no commands parsed from README.md"
    unmapped = [shlex.join(a) for a in shell if a[0] != TRANSFERJS and _elsewhere(a) is None]
    assert not unmapped, (f"README.md shows commands that no test runs: {unmapped}. Run them in tests/test_readme.py or "
                          "map them in RUN_ELSEWHERE (mark output or file trees as ```text)")
    assert (ROOT / "tests/test_demo.py").read_text().count('"transferjs.demo"') == 1  # make demo = python -m transferjs.demo
    assert "make test" in (ROOT / ".ci/run").read_text() and "-m transferjs.demo" in (ROOT / "Makefile").read_text()


def _write_inputs(work: Path) -> None:
    """The files the README's commands read, made from the project's fixtures."""
    import skimage.data
    import torch
    from PIL import Image

    from transferjs.demo import efficientnet_lite0_weights
    from fixtures.emoji_dataset import CATEGORIES, build_emoji_dataset
    from fixtures.models import tiny_cnn

    model, example = tiny_cnn()
    torch.onnx.export(model, example, str(work / "model.onnx"), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    batch = torch.export.Dim("batch", max=64)
    torch.export.save(torch.export.export(model, (torch.randn(2, 3, 32, 32),), dynamic_shapes=({0: batch},)),
                      str(work / "model.pt2"))
    traced_model, traced_example = tiny_cnn(size=224)  # the README's --input-shape image:1,3,224,224
    torch.jit.trace(traced_model, traced_example).save(str(work / "traced.pt"))
    shutil.copyfile(efficientnet_lite0_weights(), work / "weights.pth")
    Image.fromarray(skimage.data.chelsea()).save(work / "cat.jpg", quality=92)
    build_emoji_dataset(work / "photos", per_class=12, categories=CATEGORIES[:3])
    # Keras in a child process: its start-up stays out of this one.
    keras_script = (
        "import keras\n"
        "keras.utils.set_random_seed(0)\n"
        "inp = keras.Input((32, 32, 3), name='image')\n"
        "x = keras.layers.Conv2D(8, 3, activation='relu')(inp)\n"
        "x = keras.layers.GlobalAveragePooling2D()(x)\n"
        "keras.Model(inp, keras.layers.Dense(4, activation='softmax', name='probabilities')(x)).save('classifier.keras')\n"
    )
    proc = subprocess.run([str(ROOT / ".venv/bin/python"), "-c", keras_script], cwd=work, env=_env(work),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _env(work: Path) -> dict:
    # The feature cache goes under the working directory, not the user's ~/.cache.
    return {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TRANSFERJS_CACHE": str(work / "feature-cache")}


@pytest.fixture(scope="module")
def readme_workdir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("readme")
    _write_inputs(work)
    return work


@pytest.mark.slow
def test_readme_transferjs_commands_run_verbatim(readme_workdir):
    shell, _ = readme_commands()
    ran, failures = 0, []
    for argv in shell:
        if argv[0] != TRANSFERJS:
            continue
        ran += 1
        proc = subprocess.run([str(ROOT / TRANSFERJS), *argv[1:]], cwd=readme_workdir, env=_env(readme_workdir),
                              capture_output=True, text=True, timeout=900)
        out = argv[argv.index("-o") + 1] if "-o" in argv else None
        if proc.returncode != 0:  # keep going: later commands that need this one's output fail too, and say so
            failures.append(f"{shlex.join(argv)} -> exit {proc.returncode}\n{proc.stderr[-3000:]}")
        elif out and not (readme_workdir / out).is_dir():
            failures.append(f"{shlex.join(argv)} -> exit 0 but no {out}")
    assert ran, "README.md shows no transferjs command"
    assert not failures, f"{len(failures)} of {ran} README commands failed:\n\n" + "\n\n".join(failures)


@pytest.mark.slow
def test_readme_python_blocks_run(readme_workdir):
    _, python = readme_commands()
    for i, body in enumerate(python):
        script = readme_workdir / f"readme_block_{i}.py"
        script.write_text(body)
        proc = subprocess.run([str(ROOT / ".venv/bin/python"), script.name], cwd=readme_workdir, env=_env(readme_workdir),
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"README python block {i} -> exit {proc.returncode}\n{proc.stderr[-3000:]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_readme_page_and_predict_commands_work(readme_workdir):
    """The bundle of the README's state-dict conversion, used as its prose says: served by
    ``python3 -m http.server`` and opened in Chromium, and run with ``node predict.mjs cat.jpg``;
    the page and Node.js give the same answer."""
    from converter.runtimes.bundle_apps import classify_in_browser
    from converter.runtimes.node import js_dir

    bundle = readme_workdir / "out-effnet" / "tfjs"
    assert (bundle / "model.json").is_file(), "run after test_readme_transferjs_commands_run_verbatim (it converts out-effnet/)"
    shutil.copyfile(readme_workdir / "cat.jpg", bundle / "cat.jpg")
    proc = subprocess.run(["node", "predict.mjs", "cat.jpg", "--json"], cwd=bundle, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NODE_PATH": str(js_dir() / "node_modules")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    node_top = json.loads(proc.stdout)["results"][0]["top"]
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", "-d", str(bundle), str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        page = classify_in_browser(bundle, readme_workdir / "cat.jpg", readme_workdir / "page.png", url=f"http://127.0.0.1:{port}/")
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert page["backend"] == "wasm"
    assert page["top"][0]["index"] == node_top[0]["index"], (page["top"], node_top)
    # A JPEG: Chromium's decoder and predict.mjs' jpeg-js round the IDCT and chroma upsampling differently
    # (measured 0.016 on this photo); decoded PNGs agree within 1e-3 (tests/test_page.py).
    assert abs(page["top"][0]["probability"] - node_top[0]["probability"]) < 0.03, (page["top"], node_top)
