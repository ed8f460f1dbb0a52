"""The bundle's web page in headless Chromium, served by the bundle's own server (``transferjs serve``).

Classify dropped images (the same numbers as ``predict.mjs``), the webcam (Chromium's fake camera playing
a video made from fixture images), and teaching: a new class from files and the webcam, trained in the
page, held-out accuracy, the downloaded bundle classified by ``transferjs predict``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from converter.runtimes.bundle_apps import drive_page, predict_with_node
from tests.conftest import ARTIFACTS, ROOT, TRANSFERJS, run_cli

COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
NEW_CLASS, NEW_COLOR = "yellow", (230, 220, 30)


def color_images(folder: Path, color, n: int, seed: int) -> list[Path]:
    """``n`` noisy 40x40 PNGs of one colour."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        pixels = np.clip(np.array(color) + rng.normal(0, 25, (40, 40, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:02d}.png")
        files.append(folder / f"{i:02d}.png")
    return files


def write_y4m(path: Path, images, size=(320, 240), repeat: int = 10) -> Path:
    """A Y4M video (what Chromium's fake camera plays) showing each image for ``repeat`` frames."""
    w, h = size
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
        for image in images:
            a = np.asarray(Image.open(image).convert("RGB").resize((w, h)), dtype=np.float32)
            y = 0.299 * a[..., 0] + 0.587 * a[..., 1] + 0.114 * a[..., 2]
            planes = [y, ((a[..., 2] - y) * 0.564 + 128)[::2, ::2], ((a[..., 0] - y) * 0.713 + 128)[::2, ::2]]
            frame = b"FRAME\n" + b"".join(np.clip(p, 0, 255).round().astype(np.uint8).tobytes() for p in planes)
            f.write(frame * repeat)
    return path


@contextlib.contextmanager
def served(folder):
    """``transferjs serve FOLDER --port 0`` in the background; yields its URL."""
    proc = subprocess.Popen(TRANSFERJS + ["serve", str(folder), "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://[\d.]+:\d+/", line)
        assert match, f"serve printed {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        yield match.group(0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("page-images")
    files = {name: color_images(root / "all" / name, c, 14, seed) for seed, (name, c) in enumerate(COLORS.items())}
    files[NEW_CLASS] = color_images(root / "all" / NEW_CLASS, NEW_COLOR, 10, 7)
    data = root / "data"
    for name in COLORS:  # the retrain set: the first 8 of each old class
        (data / name).mkdir(parents=True)
        for f in files[name][:8]:
            (data / name / f.name).write_bytes(f.read_bytes())
    (root / "notes.txt").write_text("not an image")
    return {"files": files, "data": data, "text": root / "notes.txt", "root": root}


@pytest.fixture(scope="module")
def retrained(tiny_converted, images, tmp_path_factory) -> Path:
    """``transferjs retrain`` of the tiny CNN on three colours: its tfjs-transfer folder."""
    out = tmp_path_factory.mktemp("page-retrained") / "colors"
    proc = run_cli("retrain", tiny_converted.model.directory, "--data", images["data"], "-o", out, "--no-progress",
                   "--no-baseline", "--cache-dir", out.parent / "cache")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "tfjs-transfer"


def _get(url: str, path: str, method: str = "GET"):
    host, port = url.split("//")[1].strip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(method, path)
    r = conn.getresponse()
    return r.status, dict(r.getheaders()), r.read()


def test_serve_sends_isolation_headers_and_types_and_stays_inside_the_bundle(tiny_converted, tmp_path):
    bundle = tiny_converted.bundle
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    link = bundle / "link-out.txt"
    link.symlink_to(outside)
    try:
        with served(bundle) as url:
            status, headers, body = _get(url, "/")
            assert status == 200 and b"classify.mjs" in body and headers["Content-Type"].startswith("text/html")
            assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            assert _get(url, "/vendor/tfjs-backend-wasm-simd.wasm")[1]["Content-Type"] == "application/wasm"
            assert _get(url, "/classify.mjs")[1]["Content-Type"].startswith("text/javascript")
            assert _get(url, "/metadata.json")[1]["Content-Type"].startswith("application/json")
            for escape in ("/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd", "/link-out.txt", "/nope.js"):
                status, _, body = _get(url, escape)
                assert status == 404 and b"secret" not in body and b"root:" not in body, escape
            assert _get(url, "/", "POST")[0] == 405
    finally:
        link.unlink()
    proc = run_cli("serve", tmp_path)
    assert proc.returncode == 2 and "serve.mjs" in proc.stderr and str(tmp_path) in proc.stderr


def test_page_classifies_dropped_images_like_predict_mjs(tiny_converted, images, tmp_path):
    bundle = tiny_converted.bundle
    picked = [images["files"]["red"][0], images["files"]["blue"][1], images["files"][NEW_CLASS][0]]
    expected = predict_with_node(bundle, picked, top=5)
    ARTIFACTS.mkdir(exist_ok=True)
    with served(bundle) as url:
        page = drive_page({"url": url, "screenshots": str(ARTIFACTS), "steps": [
            {"do": "drop", "files": [str(f) for f in picked[:2]]},
            {"do": "paste", "files": [str(picked[2])]},
            {"do": "drop", "files": [str(images["text"])]},
            {"do": "screenshot", "name": "page-classify"}]}, tmp_path)
        cpu = drive_page({"url": url + "?backend=cpu", "width": 360, "steps": [
            {"do": "keyboard-pick", "files": [str(picked[0])]}, {"do": "drop", "files": []}]}, tmp_path)
    assert page["state"]["isolated"] is True and page["state"]["backend"] == "wasm", page["state"]
    assert re.search(r"wasm backend, \d+ thread", page["state"]["backendText"])
    results = page["results"][2]
    assert [r["name"] for r in results] == [f.name for f in picked] + [images["text"].name]
    for got, want in zip(results[:3], expected):
        assert [t["index"] for t in got["top"]] == [t["index"] for t in want["top"]]
        assert np.allclose([t["probability"] for t in got["top"]], [t["probability"] for t in want["top"]], atol=1e-3)
    assert "not an image" in results[3]["error"] and results[3]["top"] is None
    assert cpu["state"]["backend"] == "cpu"
    assert cpu["results"][0] == 1  # picked with the keyboard: drop zone, Enter, file chooser
    assert abs(cpu["results"][1][0]["top"][0]["probability"] - expected[0]["top"][0]["probability"]) < 1e-3
    assert cpu["state"]["scrollWidth"] <= 360  # phone width: nothing sticks out sideways
    assert not page["pageErrors"], page["pageErrors"]


def test_webcam_shows_live_predictions_and_a_clear_message_when_refused(tiny_converted, images, tmp_path):
    video = write_y4m(tmp_path / "camera.y4m", images["files"]["green"][:2])
    with served(tiny_converted.bundle) as url:
        live = drive_page({"url": url, "video": str(video), "screenshots": str(ARTIFACTS), "steps": [
            {"do": "camera", "frames": 5}, {"do": "screenshot", "name": "page-webcam"}]}, tmp_path)
        refused = drive_page({"url": url, "camera": "deny", "steps": [{"do": "camera", "frames": 1}]}, tmp_path)
    cam = live["results"][0]
    assert cam["error"] is None and cam["frames"] >= 5
    assert len(cam["top"]) == 5 and abs(sum(t["probability"] for t in cam["top"]) - 1) < 1e-3
    assert refused["results"][0]["error"].startswith("Camera access was refused"), refused["results"][0]
    assert refused["results"][0]["status"] == refused["results"][0]["error"]  # shown on the page


def test_teach_a_new_class_in_the_page_then_predict_the_downloaded_bundle(retrained, images, tmp_path):
    files = images["files"]
    video = write_y4m(tmp_path / "camera.y4m", files["green"][8:10])
    steps = [{"do": "add-class", "name": NEW_CLASS},
             {"do": "add-examples", "label": NEW_CLASS, "files": [str(f) for f in files[NEW_CLASS][:6]]}]
    steps += [{"do": "add-examples", "label": name, "files": [str(f) for f in files[name][:5]]} for name in ("red", "blue")]
    steps += [{"do": "record", "label": "green", "ms": 1200}, {"do": "screenshot", "name": "page-teach"},
              {"do": "train", "epochs": 150}, {"do": "screenshot", "name": "page-trained"},
              {"do": "download", "to": str(tmp_path / "taught.zip")},
              {"do": "drop", "files": [str(f) for f in files[NEW_CLASS][6:8]]}]
    with served(retrained) as url:
        page = drive_page({"url": url, "video": str(video), "screenshots": str(ARTIFACTS), "steps": steps}, tmp_path)
    assert page["state"]["teach"] and not page["pageErrors"], page
    assert page["results"][0] == ["blue", "green", "red", NEW_CLASS]
    assert re.match(r"\d+ examples", page["results"][4]) and int(page["results"][4].split()[0]) >= 3  # webcam frames
    trained = page["results"][6]
    accuracy = trained["accuracy"]
    assert set(accuracy) == {"blue", "green", "red", NEW_CLASS}
    assert accuracy[NEW_CLASS]["accuracy"] == 1.0 and np.mean([a["accuracy"] for a in accuracy.values()]) > 0.5  # chance: 0.25

    with zipfile.ZipFile(tmp_path / "taught.zip") as z:
        assert z.testzip() is None
        z.extractall(tmp_path / "unzipped")
    (bundle,) = (tmp_path / "unzipped").iterdir()
    meta = json.loads((bundle / "metadata.json").read_text())
    assert meta["labels"] == ["blue", "green", "red", NEW_CLASS] and meta["outputs"][0]["meaning"] == "probabilities"
    held_out = files[NEW_CLASS][6:8]
    proc = run_cli("predict", bundle, *held_out, "--top", "1")
    assert proc.returncode == 0, proc.stderr
    tops = [line.split()[0] for line in proc.stdout.splitlines() if line.startswith("  ")]
    assert tops == [NEW_CLASS, NEW_CLASS], proc.stdout
    # The downloaded bundle gives the numbers the page gave with the head it trained.
    node = predict_with_node(bundle, held_out, top=4)
    for got, want in zip(page["results"][-1], node):
        assert np.allclose([t["probability"] for t in got["top"][:4]], [t["probability"] for t in want["top"]], atol=1e-3)
    # And it imports back into transferjs (the TF.js source): a SavedModel with parity, which `verify` accepts.
    proc = run_cli("convert", bundle / "model.json", "-o", tmp_path / "imported")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "imported" / "report.json").read_text())
    assert report["parity"]["tensorflow"]["ok"] and report["parity"]["tfjs"]["ok"], report["parity"]
    proc = run_cli("verify", tmp_path / "imported")
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_page_runs_a_uint8_bundle_whose_kernels_are_restored_at_load(images, tmp_path):
    """``--restore-at-load``: the page's tf.loadGraphModel runs the initializer graph; images after the first
    still classify (a first run inside tf.tidy would have disposed the kernels)."""
    import dataclasses

    from converter import ConvertOptions, convert
    from converter.api import export
    from converter.export.tfjs import ExportOptions
    from tests.test_bundle import _wide_channel_net
    from transferjs.demo import PREPROCESSING

    net, example = _wide_channel_net()  # a 32 -> 64 kernel: 8-bit, restored at load
    options = ConvertOptions(preprocessing=dataclasses.replace(PREPROCESSING, size=(32, 32)))
    model = convert(net, tmp_path / "conv", options, example_inputs=example).model
    bundle = tmp_path / "u8"
    export(model.directory, bundle, ExportOptions(quantize="uint8", restore_at_load=True))
    assert json.loads((bundle / "model.json").read_text())["modelInitializer"]["node"]
    picked = [images["files"]["red"][0], images["files"]["blue"][1], images["files"][NEW_CLASS][0]]
    expected = predict_with_node(bundle, picked, top=5)
    with served(bundle) as url:
        page = drive_page({"url": url, "steps": [{"do": "drop", "files": [str(f) for f in picked]}]}, tmp_path)
    results = page["results"][0]
    assert [r["name"] for r in results] == [f.name for f in picked], results
    for got, want in zip(results, expected):
        assert [t["index"] for t in got["top"]] == [t["index"] for t in want["top"]], (got, want)
        assert np.allclose([t["probability"] for t in got["top"]], [t["probability"] for t in want["top"]], atol=1e-3)
    assert not page["pageErrors"], page["pageErrors"]
