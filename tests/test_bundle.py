"""The exported bundle as a JavaScript developer uses it: predict.mjs in Node.js, index.html in Chromium."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.conftest import ARTIFACTS, run_cli


def _python_top1(effnet, image_file) -> tuple[int, float]:
    """The Python side: same decoding and preprocessing, the SavedModel, softmax."""
    from transferjs.demo import PREPROCESSING
    from converter.images import load_rgb, preprocess
    from converter.runtimes.tensorflow import run_saved_model

    model = effnet["result"].model
    (inp,), (out,) = model.inputs, model.outputs
    x = preprocess([load_rgb(image_file)], PREPROCESSING, inp.layout)
    logits = run_saved_model(model.saved_model, [{inp.name: x}])[0][out.name][0]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    return int(p.argmax()), float(p.max())


def test_bundle_holds_metadata_and_apps(effnet):
    bundle = effnet["result"].bundle
    for name in ("model.json", "metadata.json", "predict.mjs", "runtime.mjs", "preprocess.mjs", "index.html",
                 "classify.mjs", "package.json", "vendor/tf.es2017.min.js", "vendor/tfjs-backend-wasm-simd.wasm"):
        assert (bundle / name).is_file(), name
    meta = json.loads((bundle / "metadata.json").read_text())
    assert meta["tfjsVersion"] == "4.22.0" and meta["imageSize"] == 224 and meta["labels"] is None
    assert {"modelName", "timeStamp"} <= set(meta)
    (inp,) = meta["inputs"]
    assert inp["layout"] == "NHWC" and inp["dtype"] == "float32"
    assert inp["preprocessing"] == {"size": [224, 224], "scale": 1 / 255, "mean": [0.5] * 3, "std": [0.5] * 3,
                                    "channel_order": "RGB", "origin": "given"}
    assert meta["outputs"][0]["meaning"] == "logits"
    package = json.loads((bundle / "package.json").read_text())
    assert package["dependencies"]["@tensorflow/tfjs"] == "4.22.0"
    assert "http" not in (bundle / "index.html").read_text().replace("http-equiv", "")  # no CDN


@pytest.mark.slow
def test_predict_mjs_in_node_agrees_with_python(effnet, photos):
    from converter.runtimes.bundle_apps import predict_with_node

    files = [photos["chelsea"][0], photos["chelsea"][1], photos["coffee"][1]]
    results = predict_with_node(effnet["result"].bundle, files, top=3)
    for r, f in zip(results, files):
        index, p = _python_top1(effnet, f)
        top = r["top"][0]
        assert int(top["label"]) == top["index"] == index, (f, r)
        # PNG decodes to the same bytes everywhere; JPEG decoders (jpeg-js, libjpeg-turbo)
        # differ in chroma upsampling, which moves the probability by about half a percent.
        assert abs(top["probability"] - p) < (2e-3 if f.suffix == ".png" else 2e-2), (f, top, p)
    assert results[0]["top"][0]["index"] in range(281, 286)  # the cat
    assert results[2]["top"][0]["index"] == 967  # espresso


@pytest.mark.slow
def test_index_html_in_chromium_shows_the_same_top_label(effnet, photos):
    from converter.runtimes.bundle_apps import classify_in_browser

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "index-html-chelsea.png"
    page = classify_in_browser(effnet["result"].bundle, photos["chelsea"][0], shot)
    index, p = _python_top1(effnet, photos["chelsea"][0])
    assert page["backend"] == "wasm"
    assert page["top"][0]["index"] == index
    assert abs(page["top"][0]["probability"] - p) < 2e-3  # the page rounds to 0.1 %
    assert shot.stat().st_size > 10_000


def test_cli_predict(effnet, photos):
    proc = run_cli("predict", effnet["result"].bundle, photos["coffee"][0], "--top", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1].split()[0] == "967"


@pytest.mark.parametrize("damage, needle", [
    ("no_model_json", "model.json' (file not found)"),
    ("corrupt_model_json", "is not valid JSON"),
    ("missing_shard", "is missing"),
    ("short_shard", "expects"),
])
def test_damaged_bundle_gives_an_error_naming_the_file(tiny_converted, tmp_path, damage, needle):
    out = tmp_path / "model"
    shutil.copytree(tiny_converted.model.directory, out)
    bundle = out / "tfjs"
    shard = bundle / "group1-shard1of1.bin"
    if damage == "no_model_json":
        (bundle / "model.json").unlink()
    elif damage == "corrupt_model_json":
        (bundle / "model.json").write_text('{"modelTopology": ')
    elif damage == "missing_shard":
        shard.unlink()
    else:
        shard.write_bytes(shard.read_bytes()[:-8])
    proc = run_cli("verify", bundle)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert needle in proc.stderr and str(bundle) in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_uint8_bundle_is_a_quarter_of_float32_and_keeps_the_top_label_on_photos(effnet, photos, tmp_path):
    from transferjs.demo import PREPROCESSING
    from converter.images import load_rgb, preprocess

    x = preprocess([load_rgb(photos["chelsea"][0]), load_rgb(photos["coffee"][0])], PREPROCESSING, "NHWC")
    np.savez(tmp_path / "photos.npz", image=x)
    proc = run_cli("export", effnet["result"].model.directory, "-o", tmp_path / "b8", "--quantize", "uint8",
                   "--sample", tmp_path / "photos.npz")
    assert proc.returncode == 0, proc.stderr
    ratio = float(proc.stdout.split("(")[1].split(" x float32 weights")[0])
    # Kernels 8-bit per output channel; biases, scales and small kernels float16.
    assert 0.24 < ratio < 0.27, proc.stdout
    # Judged as probabilities (softmax of the logits), top-1 on the decisive rows of the
    # 3 random samples + the 2-photo batch file.
    assert "max probability change" in proc.stdout and "top-1 agreement 100%" in proc.stdout, proc.stdout
    meta = json.loads((tmp_path / "b8" / "metadata.json").read_text())
    assert meta["quantization"]["mode"] == "uint8"
    stored = list(meta["quantization"]["tensors"].values())
    # 44 conv/depthwise/matmul kernels less the few kept float16 by their calibration error (2 % of the
    # kernel elements); the rest float16 (a bias that b / s puts beyond float16 stays float32).
    assert stored.count("uint8 per output channel") > 35 and stored.count("float16") > 40 and stored.count("float32") <= 4
    rounding = list(meta["quantization"]["rounding"].values())
    assert rounding.count("calibrated (GPTQ + bias correction)") == stored.count("uint8 per output channel"), rounding
    assert 0 < rounding.count("float16: most sensitive by calibration output error") < 10, rounding


@pytest.mark.slow
def test_baked_preprocessing_takes_raw_pixels_of_any_size(effnet, photos, tmp_path):
    from converter.runtimes.bundle_apps import predict_with_node

    proc = run_cli("export", effnet["result"].model.directory, "-o", tmp_path / "baked", "--bake-preprocessing")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "baked" / "metadata.json").read_text())
    assert meta["inputs"][0]["shape"] == [None, None, None, 3]
    assert meta["inputs"][0]["preprocessing"] == {"baked": True, "size": [224, 224]}
    files = [photos["chelsea"][0], photos["coffee"][0]]
    baked = predict_with_node(tmp_path / "baked", files, top=1)
    plain = predict_with_node(effnet["result"].bundle, files, top=1)
    for b, p in zip(baked, plain):
        assert b["top"][0]["index"] == p["top"][0]["index"]
        assert abs(b["top"][0]["probability"] - p["top"][0]["probability"]) < 1e-3


def test_uint8_guard_keeps_depthwise_kernels_with_uneven_channels_in_float16():
    from converter.export.quantization import split_uint8_safe

    rng = np.random.default_rng(0)
    even = rng.standard_normal((1, 1, 16, 32)).astype(np.float32)
    depthwise = rng.standard_normal((3, 3, 16, 1)).astype(np.float32)
    depthwise[:, :, :8] *= 1e-2  # after BN folding, channel scales differ by 100x
    dead = even.copy()
    dead[..., 0] = 0.0  # a dead channel is no reason to keep a tensor in float16
    uint8, float16 = split_uint8_safe({"even": even, "depthwise": depthwise, "dead": dead})
    assert uint8 == ["even", "dead"] and float16 == ["depthwise"]


def test_uint16_export_stores_weights_in_16_bits_and_matches_in_tfjs(tiny_converted, tmp_path):
    from converter.api import export
    from converter.export.tfjs import ExportOptions
    from converter.export.weights import weight_dtypes

    result = export(tiny_converted.model.directory, tmp_path / "u16", ExportOptions(quantize="uint16"))
    assert result.parity.ok and result.parity.tolerance.atol == 5e-2, result.parity.failure_message()
    assert weight_dtypes(tmp_path / "u16").get("uint16", 0) >= 4  # the conv and dense kernels and biases
    assert 0.45 < result.weight_bytes / result.float32_bytes < 0.55
    meta = json.loads((tmp_path / "u16" / "metadata.json").read_text())
    assert meta["quantization"]["mode"] == "uint16" and meta["quantization"]["weights"]["uint16"] >= 4
    # Really quantized: TF.js differs from float32 TensorFlow by more than float32 kernels would.
    worst = max(o.max_abs for o in result.parity.outputs.values())
    assert worst > 1e-6


def test_quantized_parity_judges_probabilities_counts_decisive_rows_and_can_fail():
    from converter.verify.compare import compare
    from converter.verify.tolerance import TOLERANCES

    rule, rng = TOLERANCES["uint8"], np.random.default_rng(0)
    logits = rng.normal(size=(6, 10))
    logits[:4, 3] += 6  # four decisive rows; two near-tied ones, whose top-1 is noise
    logits[4:] *= 0.01
    features = np.zeros((6, 4))  # an exactly-zero reference: no inf x 0 = NaN
    ref = [{"logits": logits, "features": features}]
    meanings = {"logits": "logits", "features": "features"}
    noisy = logits + rng.normal(scale=0.02, size=logits.shape)
    noisy[4:] = noisy[4:, ::-1]  # swap the near-tied rows' labels: not judged
    ok = compare("tensorflow", ref, "tfjs-wasm", [{"logits": noisy, "features": features}], rule, meanings)
    assert ok.ok, ok.failure_message()
    o = ok.outputs["logits"]
    assert o.top1_counted == 4 and o.top1_agreement == 1.0 and o.max_prob_change <= rule.max_prob_change
    assert "4 of 6 row(s)" in o.note and "margin exceeds 0.3" in o.note

    broken = logits.copy()
    broken[:, 3] -= 6  # a quantization bug that moves the class
    bad = compare("tensorflow", ref, "tfjs-wasm", [{"logits": broken, "features": features + 0.5}], rule, meanings)
    assert not bad.ok and {o.name for o in bad.failures()} == {"logits", "features"}
    assert "probability change <= 0.15" in bad.failure_message() and "top-1 agreement 0.0% on 4 row(s)" in bad.failure_message()


def _wide_channel_net():
    """A small conv net whose second kernel's output channels differ in scale by 1000x (as after
    batch norm folding); the classifier undoes the scales, so every channel counts."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    with torch.no_grad():
        scale = torch.logspace(-3, 0, 64)[torch.randperm(64)]
        net[2].weight.mul_(scale[:, None, None, None])
        net[2].bias.mul_(scale)
        net[6].weight.div_(scale[None, :] / 30)
    return net.eval(), (torch.randn(1, 3, 32, 32),)


@pytest.fixture(scope="module")
def wide_channels(tmp_path_factory):
    from converter import convert

    net, example = _wide_channel_net()
    return convert(net, tmp_path_factory.mktemp("wide") / "conv", example_inputs=example).model


def _images(n: int = 64) -> np.ndarray:
    """Inputs whose channel statistics vary from image to image (so the class does)."""
    rng = np.random.default_rng(0)
    return (rng.normal(size=(n, 32, 32, 3)) * rng.uniform(0.2, 3, (n, 1, 1, 3)) + rng.normal(size=(n, 1, 1, 3))).astype(np.float32)


def test_per_channel_uint8_keeps_the_top_label_where_per_tensor_uint8_loses_it(wide_channels, tmp_path, caplog):
    from converter.api import export
    from converter.export.tfjs import ExportOptions
    from converter.runtimes.tensorflow import run_saved_model
    from converter.runtimes.tfjs_node import run_bundle
    from converter.verify.compare import softmax

    (inp,), (out,) = wide_channels.inputs, wide_channels.outputs
    x = _images()
    ref = softmax(run_saved_model(wide_channels.saved_model, [{inp.name: x}])[0][out.name].astype(np.float64))
    new = export(wide_channels.directory, tmp_path / "u8", ExportOptions(quantize="uint8"))  # its own parity check passes
    # tensorflowjs' uint8 on every weight (an explicit pattern: no float16 guard), one range per tensor.
    old = export(wide_channels.directory, tmp_path / "pt", ExportOptions(quantize="uint8-per-tensor", quantize_patterns=("**",)),
                 verify=False)
    got = {}
    for name in ("u8", "pt"):  # plain tf.loadGraphModel in Node.js, wasm backend
        got[name] = softmax(run_bundle(tmp_path / name, [{inp.name: x}], backend="wasm").samples[0][out.name].astype(np.float64))
    agree = {k: float(np.mean(v.argmax(-1) == ref.argmax(-1))) for k, v in got.items()}
    change = {k: float(np.abs(v - ref).max()) for k, v in got.items()}
    assert agree["u8"] == 1.0 and change["u8"] < 0.01, (agree, change)
    assert agree["pt"] < 0.5 and change["pt"] > 0.3, (agree, change)
    assert new.weight_bytes / new.float32_bytes < 0.3 and old.weight_bytes / old.float32_bytes < 0.26
    tensors = json.loads((tmp_path / "u8" / "metadata.json").read_text())["quantization"]["tensors"]
    assert list(tensors.values()).count("uint8 per output channel") == 1  # the 64-channel kernel; the rest is small
    assert json.loads((tmp_path / "u8" / "metadata.json").read_text())["quantization"]["scales_restored"] == "in the graph, every run"
    assert "float16" in tensors.values()
    # No known preprocessing: no calibration photos, nearest rounding, and a note that says so.
    rounding = json.loads((tmp_path / "u8" / "metadata.json").read_text())["quantization"]["rounding"]
    assert list(rounding.values()) == ["nearest"], rounding
    assert any("no known image preprocessing" in r.getMessage() and "nearest rounding" in r.getMessage()
               for r in caplog.records), caplog.text


def test_quantized_parity_fails_on_a_broken_per_channel_bundle(wide_channels, tmp_path):
    from converter.api import export, verify_bundle
    from converter.export.tfjs import ExportOptions

    export(wide_channels.directory, tmp_path / "u8", ExportOptions(quantize="uint8"), verify=False)
    assert verify_bundle(tmp_path / "u8", model_dir=wide_channels.directory).ok
    # Break it: the convolution reads the stored kernel W / s without the scale that restores it.
    model_json = tmp_path / "u8" / "model.json"
    model = json.loads(model_json.read_text())
    for node in model["modelTopology"]["node"]:
        node["input"] = [i.removesuffix("/per_channel") if node["op"] != "Mul" else i for i in node.get("input", [])]
    model_json.write_text(json.dumps(model))
    report = verify_bundle(tmp_path / "u8", model_dir=wide_channels.directory)
    assert not report.ok and report.tolerance.max_prob_change == 0.15
    assert "softmax of the logits: max change" in report.failure_message()


@pytest.fixture(scope="module")
def wide_channels_preprocessed(tmp_path_factory):
    """The wide-channel net with its image preprocessing known (so uint8 has something to calibrate on),
    and a folder of real images (emoji PNGs in class sub-folders) to calibrate it on."""
    from converter import convert
    from converter.model import Preprocessing
    from converter.pipeline import ConvertOptions
    from tests.conftest import ROOT

    root = tmp_path_factory.mktemp("wide-pre")
    net, example = _wide_channel_net()
    options = ConvertOptions(preprocessing=Preprocessing(size=(32, 32), mean=(0.5,) * 3, std=(0.25,) * 3))
    model = convert(net, root / "conv", options, example_inputs=example).model
    emoji = sorted((ROOT / "js" / "node_modules" / "emoji-datasource-google" / "img" / "google" / "64").glob("*.png"))
    for i, f in enumerate(emoji[::200][:12]):
        (root / "images" / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, root / "images" / f"class{i % 2}" / f.name)
    return model, root / "images"


def _uint8_codes(bundle) -> dict[str, bytes]:
    from converter.export.per_channel import _raw_weights

    return {w["name"]: raw for w, raw in _raw_weights(bundle) if w.get("quantization", {}).get("dtype") == "uint8"}


def test_quantize_uint8_calibrates_on_the_users_images_and_plain_tfjs_loads_it(wide_channels_preprocessed, tmp_path):
    from converter.api import export
    from converter.export.tfjs import ExportOptions
    from converter.runtimes.tensorflow import run_saved_model
    from converter.runtimes.tfjs_node import run_bundle
    from converter.verify.compare import softmax

    model, images = wide_channels_preprocessed
    photos = export(model.directory, tmp_path / "photos", ExportOptions(quantize="uint8"))
    # The quantized-parity check (top-1 on decisive rows, bounded probability change) runs and passes.
    user = export(model.directory, tmp_path / "user", ExportOptions(quantize="uint8", calibration_images=(str(images),)))
    assert photos.parity.ok and user.parity.ok, user.parity.failure_message()
    record = {n: json.loads((tmp_path / n / "metadata.json").read_text())["quantization"] for n in ("photos", "user")}
    assert record["photos"]["calibration"]["source"].startswith("photo crops") and record["photos"]["calibration"]["images"] == 20
    assert record["user"]["calibration"] == {"source": "user images", "images": 12, "found": 12, "paths": [str(images)],
                                             "choice": "seeded (0), at most 64"}, record["user"]
    assert set(record["user"]["rounding"].values()) == {"calibrated (GPTQ + bias correction)"}
    # What calibrates changes the rounding: the same kernel, other 8-bit codes.
    codes = {n: _uint8_codes(tmp_path / n) for n in ("photos", "user")}
    assert codes["photos"].keys() == codes["user"].keys() and len(codes["user"]) == 1
    assert all(codes["photos"][k] != codes["user"][k] for k in codes["user"]), "calibrating on other images changed nothing"
    # Plain tf.loadGraphModel in Node.js (wasm) on the calibration images' own kind of input.
    (inp,), (out,) = model.inputs, model.outputs
    x = _images(16)
    ref = softmax(run_saved_model(model.saved_model, [{inp.name: x}])[0][out.name].astype(np.float64))
    got = softmax(run_bundle(tmp_path / "user", [{inp.name: x}], backend="wasm").samples[0][out.name].astype(np.float64))
    assert np.mean(got.argmax(-1) == ref.argmax(-1)) >= 0.9 and np.abs(got - ref).max() < 0.15


def test_quantize_uint8_calibration_images_bad_input_names_it_exits_2_and_writes_nothing(wide_channels_preprocessed, tmp_path):
    model, images = wide_channels_preprocessed
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no images here")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    cases = [
        (["--quantize", "uint8", "--calibration-images", tmp_path / "missing"], [str(tmp_path / "missing"), "does not exist"]),
        (["--quantize", "uint8", "--calibration-images", empty], [str(empty), "holds no image"]),
        (["--quantize", "uint8", "--calibration-images", images, "--calibration-images", broken],
         [f"Cannot read image '{broken}'"]),
        (["--quantize", "float16", "--calibration-images", images], ["--calibration-images", "--quantize uint8 only",
                                                                     "--quantize float16"]),
    ]
    for i, (args, needles) in enumerate(cases):
        out = tmp_path / f"out{i}"
        proc = run_cli("export", model.directory, "-o", out, *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (args, proc.returncode, proc.stderr)
        assert all(n in proc.stderr for n in needles), (needles, proc.stderr)
        assert not out.exists() and not list(tmp_path.glob(f".out{i}*")), f"something written for {args}"


_TIDY_TWICE = """
import {{ tf, initBackend, loadBundle }} from '{runtime}';
await initBackend('wasm');
const {{ model }} = await loadBundle('{bundle}');
const x = tf.randomUniform([2, 32, 32, 3], -1, 1, 'float32', 3);
const sums = [];
for (let i = 0; i < 3; i++) {{  // inside tf.tidy, as tfjs-models' code calls models
  try {{ sums.push(tf.tidy(() => model.predict(x).sum()).dataSync()[0]); }} catch (e) {{ sums.push(String(e.message)); }}
}}
console.log(JSON.stringify({{ sums, inputs: model.inputs.length, main: model.executor.graph.inputs.length }}));
"""


def test_uint8_restored_at_load_runs_the_float32_graph_in_plain_tfjs(wide_channels, tmp_path):
    """``--restore-at-load``: the kernels' scale Muls run once, in the model.json initializer graph that plain
    ``tf.loadGraphModel`` runs, so the graph run per image is float32's op for op (issue 16's latency)."""
    import subprocess
    from collections import Counter

    from converter.api import export, verify_bundle
    from converter.export.tfjs import ExportOptions
    from converter.runtimes.node import js_dir, node_executable
    from converter.runtimes.tensorflow import run_saved_model
    from converter.runtimes.tfjs_node import run_bundle
    from converter.verify.compare import softmax

    (inp,), (out,) = wide_channels.inputs, wide_channels.outputs
    export(wide_channels.directory, tmp_path / "f32", ExportOptions(), verify=False)
    export(wide_channels.directory, tmp_path / "al", ExportOptions(quantize="uint8", restore_at_load=True))  # parity passes
    models = {k: json.loads((tmp_path / k / "model.json").read_text()) for k in ("f32", "al")}
    ops = {k: Counter(n["op"] for n in m["modelTopology"]["node"] if n["op"] not in ("Placeholder", "Const")) for k, m in models.items()}
    assert ops["al"] == ops["f32"], ops
    init = Counter(n["op"] for n in models["al"]["modelInitializer"]["node"])
    quantization = json.loads((tmp_path / "al" / "metadata.json").read_text())["quantization"]
    assert quantization["scales_restored"] == "once, at the first run (initializer graph)"
    stored = quantization["tensors"]
    assert init["Mul"] == list(stored.values()).count("uint8 per output channel") >= 1, (init, stored)
    x = _images()
    ref = softmax(run_saved_model(wide_channels.saved_model, [{inp.name: x}])[0][out.name].astype(np.float64))
    got = softmax(run_bundle(tmp_path / "al", [{inp.name: x}], backend="wasm").samples[0][out.name].astype(np.float64))
    assert np.mean(got.argmax(-1) == ref.argmax(-1)) == 1.0 and np.abs(got - ref).max() < 0.01
    # The TF.js limit this mode has: the initializer runs in the first execute, and a tf.tidy around it
    # would dispose the kernels; loadBundle (runtime.mjs, copied into every bundle) runs it at load.
    script = tmp_path / "tidy.mjs"
    script.write_text(_TIDY_TWICE.format(runtime=(js_dir() / "runtime.mjs").as_uri(), bundle=tmp_path / "al"))
    proc = subprocess.run([node_executable(), str(script)], capture_output=True, text=True, cwd=js_dir(), timeout=300)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(isinstance(s, float) for s in result["sums"]) and len(set(result["sums"])) == 1, result
    # Broken on purpose: the initializer hands out W / s without its scale; the quantized parity check fails.
    model = models["al"]
    for node in model["modelInitializer"]["node"]:
        if node["op"] == "Mul":
            node.update(op="Identity", input=node["input"][:1])
    (tmp_path / "al" / "model.json").write_text(json.dumps(model))
    assert not verify_bundle(tmp_path / "al", model_dir=wide_channels.directory).ok
