"""Everything beside ``model.json`` that makes a TF.js bundle usable on its own.

A bundle folder holds::

    model.json, group1-shard*.bin   the TF.js graph model
    metadata.json                   labels, inputs (layout, preprocessing), outputs (meaning), provenance
    predict.mjs, runtime.mjs        Node.js: `node predict.mjs cat.jpg` prints the top-k labels
    preprocess.mjs                  preprocessing shared by Node.js and the browser
    index.html, classify.mjs        a page that classifies images and the webcam, offline (teach.mjs,
                                    bundle_writer.mjs: teaching, in a tfjs-transfer folder)
    serve.mjs                       `node serve.mjs`: the page served cross-origin isolated (wasm threads)
    vendor/                         TF.js and its wasm backend for the page (no CDN)
    package.json                    the Node.js dependencies of predict.mjs, pinned

Example:
    >>> write_bundle_files(Path("out/tfjs"), model, quantize=None)
"""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path


from converter.calibration import calibration_inputs, image_calibration_inputs
from converter.tfjs_initializer import captured_inputs
from converter.export.tfjs import bundle_size, saved_model_to_graph_model
from converter.export.per_channel import ROUNDING_KEY
from converter.export.weights import weight_dtypes, weight_storage
from converter.logs import log
from converter.model import Preprocessing
from converter.runtimes.node import js_file, node_modules_dir
from converter.runtimes.tfjs_support import needs_execute_async

TEMPLATES = Path(__file__).parent / "templates"
# The page (classify, webcam, teach in a tfjs-transfer folder) and its server (COOP/COEP for wasm threads).
PAGE_FILES = ("index.html", "classify.mjs", "preprocess.mjs", "teach.mjs", "head.mjs", "bundle_writer.mjs", "serve.mjs")
_VENDOR = {
    "@tensorflow/tfjs/dist/tf.es2017.min.js": "tf.es2017.min.js",
    "@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.es2017.min.js": "tf-backend-wasm.es2017.min.js",
    "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm": "tfjs-backend-wasm.wasm",
    "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm": "tfjs-backend-wasm-simd.wasm",
    "@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-threaded-simd.wasm": "tfjs-backend-wasm-threaded-simd.wasm",
}
_NODE_DEPS = ("@tensorflow/tfjs", "@tensorflow/tfjs-backend-wasm", "jpeg-js", "pngjs")
# TF.js tensors are float32, int32 or bool: wider and narrower types arrive as these.
TFJS_DTYPE = {"float64": "float32", "float16": "float32", "int64": "int32", "int16": "int32", "int8": "int32", "uint8": "int32"}


def _input_entry(t) -> dict:
    entry = {"name": t.name, "shape": t.shape, "dtype": TFJS_DTYPE.get(t.dtype, t.dtype), "layout": t.layout}
    if entry["dtype"] != t.dtype:
        entry["source_dtype"] = t.dtype
    if t.value_range:
        entry["value_range"] = list(t.value_range)
    return entry


def metadata(model, quantize: str | None, bundle_dir=None, calibration: dict | None = None) -> dict:
    """The bundle's ``metadata.json`` (Teachable Machine's names where they overlap); ``calibration``:
    what calibrated a uint8 bundle's rounding (``calibration_record``)."""
    from importlib.metadata import version

    inputs = []
    for t in model.inputs:
        entry = _input_entry(t)
        if t.layout and len(t.shape) == 4:
            p = model.preprocessing or Preprocessing()
            entry["preprocessing"] = {"baked": True, "size": list(p.size)} if p.baked else {
                "size": list(p.size) if p.size else _spatial(t), "scale": p.scale,
                "mean": list(p.mean), "std": list(p.std), "channel_order": p.channel_order,
                "origin": "given" if model.preprocessing else "default: pixels scaled to [0, 1]",
            }
        inputs.append(entry)
    outputs = [{**_input_entry(t), "meaning": t.meaning or "values"} for t in model.outputs]
    image = next((i for i in inputs if i.get("preprocessing")), None)
    size = image["preprocessing"].get("size") if image else None
    return {
        "modelName": model.source.get("name") or Path(str(model.source.get("path", "model"))).stem,
        "labels": list(model.labels) if model.labels is not None else None,
        "imageSize": size[0] if size and size[0] == size[1] else size,
        "tfjsVersion": version("tensorflowjs"),
        "timeStamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "packageName": "transferjs",
        # Control flow (If -> Switch/Merge) runs only in model.executeAsync(); predict.mjs and classify.mjs read this.
        "executeAsync": bool(bundle_dir) and needs_execute_async(Path(bundle_dir) / "model.json"),
        "inputs": inputs,
        "outputs": outputs,
        "quantization": _quantization(quantize, bundle_dir, calibration),
        "source": {k: v for k, v in model.source.items() if k in ("format", "path", "sha256", "file_kind")},
        **({"fixedInputs": fixed} if (fixed := _fixed_inputs(model.source)) else {}),
    }


def _fixed_inputs(source: dict) -> list[dict]:
    """Source inputs fixed at conversion (``source.fixed_inputs``: a sample rate an ``If`` branched on):
    gone from the graph, so a caller must give data that suits the value.

    Example:
        >>> _fixed_inputs({"fixed_inputs": {"sr": 16000}, "fixed_inputs_from": {"sr": "the constant it is compared with"}})
        [{'name': 'sr', 'value': 16000, 'from': 'the constant it is compared with'}]
    """
    origin = source.get("fixed_inputs_from", {})
    return [{"name": k, "value": v, "from": origin.get(k)} for k, v in (source.get("fixed_inputs") or {}).items()]


def _quantization(quantize: str | None, bundle_dir, calibration: dict | None = None) -> dict | str | None:
    """The mode, how many tensors each storage has, how each tensor is stored and each kernel rounded,
    and what calibrated the rounding."""
    if not (quantize and bundle_dir):
        return quantize
    tensors = weight_storage(bundle_dir)
    model = json.loads((Path(bundle_dir) / "model.json").read_text())
    rounding = model.get("userDefinedMetadata", {}).get(ROUNDING_KEY)
    weights = {**weight_dtypes(bundle_dir)}
    per_channel = sum(v.endswith("per output channel") for v in tensors.values())
    extra = {"rounding": rounding} if rounding else {}
    if per_channel:
        weights["uint8 per output channel"] = per_channel
        # Where the channel scales are applied: a Mul per kernel per run, or once (model.json's initializer).
        extra["scales_restored"] = "once, at the first run (initializer graph)" if captured_inputs(model) else "in the graph, every run"
    return {"mode": quantize, "weights": weights, "tensors": tensors, **extra, **({"calibration": calibration} if calibration else {})}


def _spatial(t) -> list | None:
    dims = t.shape[1:3] if t.layout == "NHWC" else t.shape[2:4]
    return list(dims) if all(isinstance(d, int) for d in dims) else None


def write_bundle_files(bundle_dir: Path, meta: dict) -> None:
    """Write metadata.json, the Node.js and browser files, and vendor/ into ``bundle_dir``."""
    bundle_dir = Path(bundle_dir)
    (bundle_dir / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    for name in PAGE_FILES + ("predict.mjs", "decode.mjs"):
        shutil.copyfile(TEMPLATES / name, bundle_dir / name)
    shutil.copyfile(js_file("runtime.mjs"), bundle_dir / "runtime.mjs")
    vendor = bundle_dir / "vendor"
    vendor.mkdir(exist_ok=True)
    modules = node_modules_dir()
    for src, dst in _VENDOR.items():
        shutil.copyfile(modules / src, vendor / dst)
    versions = {dep: json.loads((modules / dep / "package.json").read_text())["version"] for dep in _NODE_DEPS}
    package = {"name": "transferjs-bundle", "private": True, "type": "module", "dependencies": versions}
    (bundle_dir / "package.json").write_text(json.dumps(package, indent=2) + "\n")


def write_tfjs_bundle(model, bundle_dir, options) -> dict:
    """Write the graph model, metadata.json and the Node.js/browser files into ``bundle_dir``.

    Returns:
        ``{"bytes", "passes", "metadata"}``: model size, TF.js passes applied, the metadata.
    """
    calibration, record = calibration_batch(model, options)
    passes = saved_model_to_graph_model(model.saved_model, bundle_dir, options, calibration)
    meta = metadata(model, options.quantize, bundle_dir, record)
    write_bundle_files(Path(bundle_dir), meta)
    return {"bytes": bundle_size(bundle_dir), "passes": passes, "metadata": meta}


def calibration_batch(model, options) -> tuple[dict | None, dict | None]:
    """``(calibration inputs, their metadata.json record)`` for ``--quantize uint8``; ``(None, None)`` otherwise.

    The user's ``options.calibration_images`` when given, else the photo crops (``calibration_inputs``);
    without known image preprocessing there are none, and the kernels get nearest rounding.

    Raises:
        InputError: a bad ``--calibration-images`` path or image, or a model they cannot be fed to.

    Example:
        >>> calibration_batch(model, ExportOptions(quantize="uint8", calibration_images=("data/",)))[1]["images"]
        64
    """
    if options.quantize != "uint8" or not options.calibrate:
        return None, None
    if options.calibration_images:
        return image_calibration_inputs(model, options.calibration_images)
    calibration = calibration_inputs(model)
    if calibration is None:
        log.warning("uint8: '%s' has no known image preprocessing (one float NHWC/NCHW image input with a square "
                    "size), so no calibration photos can be given to it; its kernels get nearest rounding "
                    "(metadata.json quantization.rounding says 'nearest').", model.source.get("name") or model.saved_model)
        return None, None
    return calibration, {"source": "photo crops (scikit-image, converter.calibration.sample_photos)",
                         "images": len(next(iter(calibration.values())))}
