"""Hostile and broken input, generated here: nothing lost, nothing hangs, one exit-code contract.

Every case runs the real CLI in a child process on files built by its own code (truncated, empty,
random and malicious model files, damaged bundles and images, odd CSVs, out-of-range options) and
checks the contract: the exit code, no traceback, a message naming the file or option, no partial
output, and every file that was there before (inputs, existing outputs) byte for byte as it was.
Most cases fail at parse or detection time (well under a second or two each); the bundle cases share
one small converted model. Then ``kill -9`` during ``convert`` and ``retrain``, and decompression
bombs with the child's peak memory measured.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import ROOT, TRANSFERJS, run_cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MB = 1024 * 1024


# ---------------------------------------------------------------- files built here

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: Path, width: int, height: int, rows: int | None = None) -> Path:
    """A 1-bit PNG of zeros that claims ``width x height`` pixels (``rows``: only that many rows of data)."""
    packer = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)
    data = b"".join(packer.compress(row) for _ in range(rows or height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(PNG_SIGNATURE + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b""))
    return path


def bomb_jpeg(path: Path, width: int = 65000, height: int = 65000) -> Path:
    """A JPEG header (SOF0) that claims ``width x height`` pixels, with no image data."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    path.write_bytes(b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof + b"\xff\xd9")
    return path


def photo(path: Path, seed: int = 0, size: int = 32, fmt: str = "PNG") -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, fmt)
    return path


class _Payload:
    """Unpickling this runs ``touch MARKER``: the files that carry it must never be loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _onnx_external(path: Path, location: str) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for entry in [("location", location), ("offset", "0"), ("length", "64")]:
        model.graph.initializer[0].external_data.add(key=entry[0], value=entry[1])
    model.graph.initializer[0].data_location = onnx.TensorProto.EXTERNAL
    model.graph.initializer[0].ClearField("raw_data")
    path.write_bytes(model.SerializeToString())
    return path


def snapshot(root: Path) -> dict:
    """Every file under ``root`` (hidden ones too) -> its sha256; folders -> None."""
    found = {}
    for p in sorted(root.rglob("*")):
        found[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
    return found


# ---------------------------------------------------------------- the cases

@dataclass
class Case:
    """One bad input: ``make(tmp, shared) -> (argv, needles)``; the run must exit ``code`` saying every needle."""

    name: str
    make: Callable
    code: int = 2


CASES: list[Case] = []


def case(name: str, code: int = 2):
    def register(make):
        CASES.append(Case(name, make, code))
        return make
    return register


# Options out of range or malformed: refused by the parser, before any file is read (exit 2).
OPTION_CASES = [
    ("convert", "--samples", "0"), ("convert", "--samples", "-3"), ("convert", "--samples", "many"),
    ("convert", "--atol", "-0.5"), ("convert", "--atol", "nan"), ("convert", "--rtol", "inf"),
    ("convert", "--shard-size", "-5"), ("convert", "--shard-size", "0"),
    ("convert", "--input-shape", "image:1,3,-5,64"), ("convert", "--input-shape", "image:1,3,0,64"),
    ("convert", "--input-shape", "image:1,3,x,64"), ("convert", "--input-shape", "1,3,32,32"),
    ("convert", "--std", "0,0,0"), ("convert", "--std", "1,1"), ("convert", "--mean", "a,b,c"),
    ("convert", "--image-size", "0,0"), ("convert", "--image-size", "224"), ("convert", "--scale", "0"),
    ("convert", "--quantize", "int4"), ("convert", "--batch", "sometimes"),
    ("export", "--shard-size", "10"), ("verify", "--samples", "0"),
    ("predict", "--top", "0"), ("predict", "--backend", "gpu"),
    ("retrain", "--test-split", "1.5"), ("retrain", "--test-split", "0"), ("retrain", "--folds", "1"),
    ("retrain", "--epochs", "0"), ("retrain", "--learning-rate", "0"), ("retrain", "--batch-size", "0"),
    ("retrain", "--patience", "-1"), ("retrain", "--fine-tune", "-1"), ("retrain", "--fine-tune-epochs", "0"),
    ("retrain", "--fine-tune-learning-rate", "-1"), ("retrain", "--label-smoothing", "1"),
    ("retrain", "--hidden", "-3"), ("retrain", "--l2", "-1"), ("retrain", "--seed", "-1"),
    ("retrain", "--std", "0,0,0"), ("retrain", "--image-size", "0,0"),
]
# A few more drawn at random (seeded) from the integer options' forbidden side.
_rng = random.Random(13)
OPTION_CASES += [(cmd, opt, str(_rng.randint(-10**6, 0))) for cmd, opt in
                 [("convert", "--samples"), ("retrain", "--epochs"), ("retrain", "--batch-size"), ("predict", "--top")]]


def _subcommand_argv(command: str, tmp: Path, shared: dict) -> list:
    model = tmp / "model.onnx"
    shutil.copyfile(shared["onnx"], model)
    (tmp / "photo.png").write_bytes(shared["png"].read_bytes())
    return {
        "convert": ["convert", model, "-o", tmp / "out"],
        "export": ["export", tmp, "-o", tmp / "out"],
        "verify": ["verify", tmp],
        "predict": ["predict", tmp, tmp / "photo.png"],
        "retrain": ["retrain", tmp, "--data", tmp, "-o", tmp / "out"],
    }[command]


for _command, _option, _value in OPTION_CASES:
    def _make(tmp, shared, command=_command, option=_option, value=_value):
        return _subcommand_argv(command, tmp, shared) + [option, value], [option, value]
    case(f"option-{_command}{_option}={_value}")(_make)


# Model files that are not what they claim (exit 2, the file named).
@case("empty-onnx")
def _(tmp, shared):
    (tmp / "m.onnx").write_bytes(b"")
    return ["convert", tmp / "m.onnx", "-o", tmp / "out"], ["m.onnx", "empty file"]


@pytest.fixture(scope="module")
def shared(tiny_onnx, tiny_converted, tmp_path_factory) -> dict:
    """Files the cases copy from: the tiny ONNX model, its converted folder and bundle, a photo."""
    folder = tmp_path_factory.mktemp("fuzz-shared")
    return {"onnx": tiny_onnx, "model_dir": tiny_converted.model.directory, "bundle": tiny_converted.bundle,
            "png": photo(folder / "photo.png"), "jpg": photo(folder / "photo.jpg", fmt="JPEG")}


for _suffix in (".onnx", ".pt", ".pt2", ".keras", ".h5", ".bin"):
    @case(f"random-bytes{_suffix}")
    def _(tmp, shared, suffix=_suffix):
        f = tmp / f"model{suffix}"
        f.write_bytes(random.Random(suffix).randbytes(4096))
        return ["convert", f, "-o", tmp / "out"], [f.name]


@case("truncated-onnx")
def _(tmp, shared):
    data = shared["onnx"].read_bytes()
    (tmp / "cut.onnx").write_bytes(data[: len(data) // 2])
    return ["convert", tmp / "cut.onnx", "-o", tmp / "out"], ["cut.onnx", "ONNX"]


@case("text-named-onnx")
def _(tmp, shared):
    (tmp / "notes.onnx").write_text("this is not a model\n" * 20)
    return ["convert", tmp / "notes.onnx", "-o", tmp / "out"], ["notes.onnx"]


@case("png-named-pt2")
def _(tmp, shared):
    (tmp / "photo.pt2").write_bytes(shared["png"].read_bytes())
    return ["convert", tmp / "photo.pt2", "-o", tmp / "out"], ["photo.pt2", "Expected a PyTorch file", "89 50 4e 47"]


@case("truncated-pt2")
def _(tmp, shared):
    z = zipfile.ZipFile(tmp / "whole.zip", "w")
    z.writestr("archive/data.pkl", pickle.dumps({"w": 1}))
    z.writestr("archive/version", "3\n")
    z.close()
    data = (tmp / "whole.zip").read_bytes()
    (tmp / "whole.zip").unlink()
    (tmp / "cut.pt2").write_bytes(data[: len(data) // 2])
    return ["convert", tmp / "cut.pt2", "-o", tmp / "out"], ["cut.pt2", "damaged or truncated zip"]


@case("zip-that-is-no-model.pt")
def _(tmp, shared):
    with zipfile.ZipFile(tmp / "holiday.pt", "w") as z:
        z.writestr("readme.txt", "photos")
    return ["convert", tmp / "holiday.pt", "-o", tmp / "out"], ["holiday.pt", "not a PyTorch file", "readme.txt"]


@case("malicious-legacy-pickle")
def _(tmp, shared):
    (tmp / "evil.pt").write_bytes(pickle.dumps(_Payload(tmp / "PWNED"), protocol=2))
    return ["convert", tmp / "evil.pt", "-o", tmp / "out", "--input-shape", "x:1,4"], ["evil.pt", "--trust-code"]


@case("malicious-zip-pickle")
def _(tmp, shared):
    with zipfile.ZipFile(tmp / "evil.pth", "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps(_Payload(tmp / "PWNED"), protocol=2))
        z.writestr("evil/version", "3\n")
    return ["convert", tmp / "evil.pth", "-o", tmp / "out", "--input-shape", "x:1,4"], ["evil.pth", "--trust-code"]


@case("onnx-external-data-parent")
def _(tmp, shared):
    (tmp / "secret.bin").write_bytes(b"\0" * 64)
    (tmp / "models").mkdir()
    _onnx_external(tmp / "models" / "m.onnx", "../secret.bin")
    return ["convert", tmp / "models" / "m.onnx", "-o", tmp / "out"], ["../secret.bin", "outside the model's folder"]


@case("onnx-external-data-absolute")
def _(tmp, shared):
    _onnx_external(tmp / "m.onnx", "/etc/passwd")
    return ["convert", tmp / "m.onnx", "-o", tmp / "out"], ["/etc/passwd"]


@case("folder-without-saved-model")
def _(tmp, shared):
    (tmp / "model").mkdir()
    (tmp / "model" / "variables.txt").write_text("x")
    return ["convert", tmp / "model", "-o", tmp / "out"], ["model", "saved_model.pb"]


@case("missing-model-file")
def _(tmp, shared):
    return ["convert", tmp / "nope.onnx", "-o", tmp / "out"], ["nope.onnx", "not found"]


# Outputs: never overwritten without --overwrite, never one that is or holds an input.
@case("overwrite-output-folder-holding-the-input")
def _(tmp, shared):
    shutil.copyfile(shared["onnx"], tmp / "model.onnx")
    (tmp / "notes.txt").write_text("mine")
    return ["convert", tmp / "model.onnx", "-o", tmp, "--overwrite"], ["model.onnx", "delete the input"]


@case("overwrite-output-is-the-input-file")
def _(tmp, shared):
    shutil.copyfile(shared["onnx"], tmp / "model.onnx")
    return ["convert", tmp / "model.onnx", "-o", tmp / "model.onnx", "--overwrite"], ["model.onnx", "delete the input"]


@case("overwrite-output-holds-the-sample")
def _(tmp, shared):
    shutil.copyfile(shared["onnx"], tmp / "model.onnx")
    (tmp / "out").mkdir()
    (tmp / "out" / "sample.npz").write_bytes(b"PK")
    return (["convert", tmp / "model.onnx", "-o", tmp / "out", "--overwrite", "--sample", tmp / "out" / "sample.npz"],
            ["sample.npz", "delete the input"])


@case("export-onto-its-own-model")
def _(tmp, shared):
    shutil.copytree(shared["model_dir"], tmp / "m")
    return ["export", tmp / "m", "-o", tmp / "m", "--overwrite"], ["'" + str(tmp / "m") + "'", "delete the input"]


@case("export-onto-the-models-parent")
def _(tmp, shared):
    shutil.copytree(shared["model_dir"], tmp / "m")
    return ["export", tmp / "m", "-o", tmp, "--overwrite"], ["delete the input"]


@case("retrain-onto-its-data")
def _(tmp, shared):
    for c in ("a", "b"):
        (tmp / "data" / c).mkdir(parents=True)
        photo(tmp / "data" / c / "0.png")
    return ["retrain", shared["model_dir"], "--data", tmp / "data", "-o", tmp / "data", "--overwrite"], ["delete the input"]


@case("existing-output-without-overwrite")
def _(tmp, shared):
    shutil.copyfile(shared["onnx"], tmp / "model.onnx")
    (tmp / "out").mkdir()
    (tmp / "out" / "keep.txt").write_text("mine")
    return ["convert", tmp / "model.onnx", "-o", tmp / "out"], ["already exists", "--overwrite"]


@case("output-below-a-file")
def _(tmp, shared):
    shutil.copyfile(shared["onnx"], tmp / "model.onnx")
    (tmp / "afile").write_text("x")
    return ["export", shared["model_dir"], "-o", tmp / "afile" / "bundle"], ["afile", "not a folder"]


# Damaged converted models and bundles.
def _model_copy(tmp, shared) -> Path:
    shutil.copytree(shared["model_dir"], tmp / "m")
    return tmp / "m"


@case("truncated-saved-model-pb-export")
def _(tmp, shared):
    pb = _model_copy(tmp, shared) / "saved_model" / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[:100])
    return ["export", tmp / "m", "-o", tmp / "out"], ["saved_model.pb"]


@case("spec-json-not-an-object")
def _(tmp, shared):
    (_model_copy(tmp, shared) / "spec.json").write_text("[1, 2]")
    return ["inspect", tmp / "m"], ["spec.json"]


@case("spec-json-cut")
def _(tmp, shared):
    spec = _model_copy(tmp, shared) / "spec.json"
    spec.write_text(spec.read_text()[:40])
    return ["export", tmp / "m", "-o", tmp / "out"], ["spec.json"]


def _bundle_copy(tmp, shared) -> Path:
    shutil.copytree(shared["bundle"], tmp / "bundle")
    (tmp / "photo.png").write_bytes(shared["png"].read_bytes())
    return tmp / "bundle"


@case("predict-missing-bundle")
def _(tmp, shared):
    (tmp / "photo.png").write_bytes(shared["png"].read_bytes())
    return ["predict", tmp / "no-bundle", tmp / "photo.png"], ["no-bundle", "no such folder"]


@case("predict-folder-that-is-no-bundle")
def _(tmp, shared):
    (tmp / "photo.png").write_bytes(shared["png"].read_bytes())
    (tmp / "empty").mkdir()
    return ["predict", tmp / "empty", tmp / "photo.png"], ["empty", "predict.mjs"]


@case("predict-corrupt-metadata-json")
def _(tmp, shared):
    (_bundle_copy(tmp, shared) / "metadata.json").write_text('{"inputs": [')
    return ["predict", tmp / "bundle", tmp / "photo.png"], ["metadata.json"]


@case("verify-corrupt-metadata-json")
def _(tmp, shared):
    (_bundle_copy(tmp, shared) / "metadata.json").write_text('{"inputs": [')
    return ["verify", tmp / "bundle", "--model-dir", shared["model_dir"]], ["metadata.json", "not valid JSON"]


@case("predict-corrupt-model-json")
def _(tmp, shared):
    (_bundle_copy(tmp, shared) / "model.json").write_text("{")
    return ["predict", tmp / "bundle", tmp / "photo.png"], ["model.json"]


@case("predict-missing-shard")
def _(tmp, shared):
    for shard in _bundle_copy(tmp, shared).glob("*.bin"):
        shard.unlink()
    return ["predict", tmp / "bundle", tmp / "photo.png"], ["shard", "missing"]


@case("predict-short-shard")
def _(tmp, shared):
    for shard in _bundle_copy(tmp, shared).glob("*.bin"):
        shard.write_bytes(shard.read_bytes()[:-8])
    return ["predict", tmp / "bundle", tmp / "photo.png"], ["bytes", "expects"]


# Images given to predict: each named; the readable ones still answered.
def _predict_on(make_image):
    def make(tmp, shared):
        _bundle_copy(tmp, shared)
        image, needles = make_image(tmp, shared)
        return ["predict", tmp / "bundle", image], [Path(image).name, *needles]
    return make


case("predict-truncated-png")(_predict_on(lambda tmp, s: (
    (tmp / "cut.png").write_bytes(s["png"].read_bytes()[:200]) and tmp / "cut.png", ["truncated or corrupt PNG"])))
case("predict-truncated-jpeg")(_predict_on(lambda tmp, s: (
    (tmp / "cut.jpg").write_bytes(s["jpg"].read_bytes()[:300]) and tmp / "cut.jpg", ["JPEG"])))
case("predict-empty-image")(_predict_on(lambda tmp, s: ((tmp / "e.png").write_bytes(b"") or tmp / "e.png", ["empty file"])))
case("predict-text-named-png")(_predict_on(lambda tmp, s: ((tmp / "t.png").write_text("hello") and tmp / "t.png", ["PNG or JPEG"])))
case("predict-missing-image")(_predict_on(lambda tmp, s: (tmp / "gone.png", ["file not found"])))
case("predict-png-header-only")(_predict_on(lambda tmp, s: ((tmp / "h.png").write_bytes(PNG_SIGNATURE) and tmp / "h.png", ["PNG"])))
case("predict-jpeg-bomb-header")(_predict_on(lambda tmp, s: (bomb_jpeg(tmp / "big.jpg"), ["65000x65000", "megapixels"])))


# Datasets for retrain.
def _csv_case(rows: list[str], needles: list[str], extra=()):
    def make(tmp, shared):
        (tmp / "data").mkdir()
        for i, c in enumerate(("a", "b")):
            photo(tmp / "data" / f"{c}.png", seed=i)
        (tmp / "data" / "list.csv").write_text("\n".join(rows) + "\n")
        return ["retrain", shared["model_dir"], "--data-csv", tmp / "data" / "list.csv", "-o", tmp / "out", *extra], needles
    return make


case("csv-dotdot-outside")(_csv_case(["a.png,a", "../../../../etc/passwd,b"], ["list.csv", "outside its folder", "--allow-outside"]))
case("csv-absolute-outside")(_csv_case(["a.png,a", "/etc/hostname,b"], ["list.csv", "/etc/hostname", "outside"]))
case("csv-malformed-rows")(_csv_case(["a.png", "b.png,"], ["list.csv", "path,label"]))
case("csv-missing-files")(_csv_case(["a.png,a", "nothere.png,b"], ["list.csv", "missing file"]))
case("csv-one-class")(_csv_case(["a.png,a", "b.png,a"], ["list.csv", "at least 2"]))


@case("csv-not-text")
def _(tmp, shared):
    (tmp / "list.csv").write_bytes(bytes(range(256)) * 4)
    return ["retrain", shared["model_dir"], "--data-csv", tmp / "list.csv", "-o", tmp / "out"], ["list.csv"]


@case("retrain-data-is-a-file")
def _(tmp, shared):
    (tmp / "photos").write_text("x")
    return ["retrain", shared["model_dir"], "--data", tmp / "photos", "-o", tmp / "out"], ["photos", "not a folder"]


LEFTOVER_PATTERNS = (".*.partial-*", ".*.old-*", ".*.transferjs-run")


@pytest.mark.parametrize("bad", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_cleanly(bad: Case, shared, tmp_path):
    argv, needles = bad.make(tmp_path, shared)
    before = snapshot(tmp_path)
    proc = run_cli(*argv)
    assert proc.returncode == bad.code, (proc.returncode, proc.stdout[-1000:], proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr and "unexpected" not in proc.stderr, proc.stderr[-3000:]
    for needle in needles:
        assert str(needle) in proc.stderr, (needle, proc.stderr[-3000:])
    assert snapshot(tmp_path) == before, "an input or an existing output changed, or something was written"
    assert not (tmp_path / "PWNED").exists(), "code from an untrusted file ran"
    for pattern in LEFTOVER_PATTERNS:
        assert not list(tmp_path.parent.glob(pattern)) and not list(tmp_path.glob(pattern))


def test_there_are_enough_cases():
    assert len(CASES) >= 60, len(CASES)


# ---------------------------------------------------------------- verbose, one bad image among good ones

@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_shows_the_traceback_before_or_after_the_subcommand(where, tmp_path):
    argv = ["convert", tmp_path / "nope.onnx", "-o", tmp_path / "out"]
    proc = run_cli(*(["-v", *argv] if where == "before" else [*argv, "-v"]))
    assert proc.returncode == 2 and "Traceback" in proc.stderr and "nope.onnx" in proc.stderr


def test_one_bad_image_among_good_ones_still_answers_the_good_ones(shared, tmp_path):
    bundle = _bundle_copy(tmp_path, shared)
    good = tmp_path / "photo.png"
    proc = run_cli("predict", bundle, good, tmp_path / "gone.png", shared["jpg"], "--top", "2")
    assert proc.returncode == 2, proc.stderr
    assert str(good) in proc.stdout and str(shared["jpg"]) in proc.stdout and proc.stdout.count("%") == 4
    assert "gone.png" in proc.stderr and "1 of 3 image(s)" in proc.stderr and "Traceback" not in proc.stderr


def test_predict_mjs_speaks_the_same_exit_codes(shared, tmp_path):
    """The bundle's own predict.mjs, as a JavaScript user runs it: 2 for bad input, 5 for a missing runtime."""
    from converter.runtimes.node import js_dir, node_executable

    bundle = _bundle_copy(tmp_path, shared)
    env = {**os.environ, "NODE_PATH": str(js_dir() / "node_modules")}
    node = [node_executable(), str(bundle / "predict.mjs")]
    for args, code, needle in [([], 2, "usage"), ([str(tmp_path / "photo.png"), "--top", "0"], 2, "--top"),
                               ([str(tmp_path / "nope.png")], 2, "nope.png"),
                               ([str(tmp_path / "photo.png")], 0, "")]:
        proc = subprocess.run(node + args, capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == code and needle in proc.stderr + proc.stdout, (args, proc.stderr)
    bare = {k: v for k, v in env.items() if k != "NODE_PATH"}
    proc = subprocess.run(node + [str(tmp_path / "photo.png")], capture_output=True, text=True, env=bare, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 5 and "npm install" in proc.stderr and "MODULE_NOT_FOUND" not in proc.stderr, proc.stderr


# ---------------------------------------------------------------- decompression bombs

def _peak_rss_mb(cmd: list, env=None) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``cmd`` under a fresh Python that reports its children's peak RSS (MB): earlier children do not count."""
    probe = ("import resource, subprocess, sys, json; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "print(json.dumps([p.returncode, p.stdout, p.stderr, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss]))")
    out = subprocess.run([sys.executable, "-c", probe, *map(str, cmd)], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, **(env or {})}, timeout=600)
    code, stdout, stderr, kb = json.loads(out.stdout)
    return subprocess.CompletedProcess(cmd, code, stdout, stderr), kb / 1024


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("bombs")
    return [bomb_png(folder / "b12k.png", 12000, 12000), bomb_png(folder / "b20k.png", 20000, 20000),
            bomb_png(folder / "b100k.png", 100000, 100000, rows=20000)]


def test_predict_refuses_decompression_bombs_in_little_memory(shared, bombs, tmp_path):
    bundle = _bundle_copy(tmp_path, shared)
    proc, peak = _peak_rss_mb(TRANSFERJS + ["predict", str(bundle), *map(str, bombs), str(tmp_path / "photo.png")])
    assert proc.returncode == 2, proc.stderr
    for b, claim in zip(bombs, ("12000x12000", "20000x20000", "100000x100000")):
        assert f"'{b}' claims {claim} pixels" in proc.stderr
    assert "photo.png" in proc.stdout  # the good image is still classified
    assert peak < 500, f"predict peaked at {peak:.0f} MB"


def test_retrain_reads_decompression_bombs_in_little_memory(bombs, tmp_path):
    """The image checks retrain runs on every file (the data scan, then decoding), in a child process."""
    data = tmp_path / "data"
    for c in ("a", "b"):
        (data / c).mkdir(parents=True)
        photo(data / c / "ok.png")
    for b in bombs:
        shutil.copyfile(b, data / "a" / b.name)
    script = ("import sys; from retrain.data import scan_folder; from converter.images import load_rgb\n"
              "from converter.errors import InputError\n"
              "d = scan_folder(sys.argv[1]); print(len(d.items), len(d.skipped))\n"
              "for p, why in d.skipped: print(why)\n"
              "for p in sys.argv[2:]:\n"
              "    try: load_rgb(p)\n"
              "    except InputError as e: print(e)\n")
    proc, peak = _peak_rss_mb([sys.executable, "-c", script, data, *bombs], env={"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "2 3"
    assert proc.stdout.count("megapixels") == 6
    assert peak < 500, f"reading the bombs peaked at {peak:.0f} MB"


# ---------------------------------------------------------------- atomic outputs, umask, stale partials

def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_stale_partials_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    from converter.atomic import atomic_output_dir

    dead = tmp_path / f".out.partial-{_dead_pid()}-abc"
    (dead / "saved_model").mkdir(parents=True)
    live = tmp_path / f".out.partial-{os.getppid()}-abc"
    live.mkdir()
    old = tmp_path / f".out.old-{_dead_pid()}-xyz"
    (old / "out").mkdir(parents=True)  # killed between moving the old output aside and the new one in
    (old / "out" / "keep.txt").write_text("old output")
    with atomic_output_dir(tmp_path / "other") as tmp:
        (tmp / "f").write_text("x")
    assert dead.exists()  # another target's leftovers are not touched
    with atomic_output_dir(tmp_path / "out", overwrite=True) as tmp:
        assert (tmp_path / "out" / "keep.txt").read_text() == "old output"  # the old output came back
        (tmp / "f").write_text("new")
    assert not dead.exists() and not old.exists() and live.exists()
    assert (tmp_path / "out" / "f").read_text() == "new"


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_output_folders_follow_the_umask(mask, tmp_path):
    from converter.atomic import atomic_output_dir, write_atomic

    previous = os.umask(mask)
    try:
        with atomic_output_dir(tmp_path / "out") as tmp:
            write_atomic(tmp / "a.json", b"{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~mask
    assert (tmp_path / "out" / "a.json").stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.slow
def test_convert_killed_mid_write_leaves_nothing_after_the_next_run(tiny_onnx, shared, tmp_path):
    out = tmp_path / "out"
    args = TRANSFERJS + ["convert", str(tiny_onnx), "-o", str(out)]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=lambda: os.umask(0o022))
    deadline = time.monotonic() + 600
    while not list(tmp_path.glob(".out.partial-*/saved_model")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "convert finished before it could be killed: " + proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(tmp_path.glob(".out.partial-*")) and not out.exists()  # the kill left a partial, never a half `out`
    # The next run for that output (an export of the shared model: quicker than a second conversion).
    again = subprocess.run(TRANSFERJS + ["export", str(shared["model_dir"]), "-o", str(out), "--no-verify"], cwd=ROOT,
                           capture_output=True, text=True, timeout=900, preexec_fn=lambda: os.umask(0o022))
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "a stale partial was left beside the output"
    assert out.stat().st_mode & 0o777 == 0o755 and (out / "model.json").stat().st_mode & 0o777 == 0o644


# ---------------------------------------------------------------- checkpoints and caches

def test_a_truncated_checkpoint_is_set_aside_and_training_resumes_from_the_one_before(tmp_path):
    from tests.test_finetune import _head_problem, _Killed

    (tmp_path / "a").mkdir()
    straight, _ = _head_problem(tmp_path / "a", epochs=5, resume=False)
    (tmp_path / "b").mkdir()
    with pytest.raises(_Killed):
        _head_problem(tmp_path / "b", epochs=5, resume=False, kill_before=3)  # epochs 1-3 checkpointed
    ckpt = tmp_path / "b" / "ckpt.npz"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    resumed, _ = _head_problem(tmp_path / "b", epochs=5, resume=True)
    assert (tmp_path / "b" / "ckpt.damaged.npz").exists()
    assert resumed["resumed_from_epoch"] == 2  # from the checkpoint before the damaged one
    assert resumed["loss"] == pytest.approx(straight["loss"], rel=1e-5)


def test_unreadable_feature_cache_entries_are_misses(tmp_path):
    import numpy as np

    from retrain.features import _cached

    good = tmp_path / "good.npy"
    np.save(good, np.ones(4, np.float32))
    cut = tmp_path / "cut.npy"
    cut.write_bytes(good.read_bytes()[:-3])
    (tmp_path / "junk.npy").write_bytes(b"\0" * 10)
    assert _cached(good, 4) is not None
    assert _cached(cut, 4) is None and _cached(tmp_path / "junk.npy", 4) is None and _cached(good, 5) is None


@pytest.mark.slow
def test_retrain_killed_with_a_bomb_in_its_data_resumes_past_a_truncated_checkpoint(shared, bombs, tmp_path):
    """kill -9 while fine-tuning; the checkpoint and a cached feature cut short; --resume finishes; nothing left over."""
    data = tmp_path / "data"
    for c, seed in (("a", 0), ("b", 100)):
        (data / c).mkdir(parents=True)
        for i in range(6):
            photo(data / c / f"{i}.png", seed=seed + i)
    shutil.copyfile(bombs[1], data / "a" / "bomb.png")
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["retrain", shared["model_dir"], "--data", data, "-o", out, "--cache-dir", cache, "--no-progress",
            "--fine-tune", "1", "--fine-tune-epochs", "12", "--no-baseline", "--no-refit"]
    proc = subprocess.Popen(TRANSFERJS + list(map(str, args)), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoint = tmp_path / ".out.transferjs-run" / "fine_tune.npz"
    deadline = time.monotonic() + 600
    while not checkpoint.with_name("fine_tune.previous.npz").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed: " + proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    checkpoint.write_bytes(checkpoint.read_bytes()[:200])
    entry = sorted(cache.rglob("*.npy"))[0]
    entry.write_bytes(entry.read_bytes()[:-5])

    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "fine_tune.npz" in resumed.stderr and "damaged" in resumed.stderr and "resumed after epoch" in resumed.stderr
    report = json.loads((out / "report.json").read_text())
    assert any(s["path"].endswith("bomb.png") and "megapixels" in s["reason"] for s in report["skipped"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "data", "out"], "leftovers beside the output"
    assert len(entry.read_bytes()) > 128 + 4 * 8  # the cut entry was recomputed and rewritten whole
    assert not list(cache.rglob(".*partial*"))


def test_resume_without_a_checkpoint_says_so(tmp_path):
    from retrain.run_state import prepare_run_dir

    logged = []
    prepare_run_dir(tmp_path / ".out.transferjs-run", "stamp", resume=True, log=logged.append)
    assert any("--resume" in m and "no interrupted run" in m for m in logged), logged
