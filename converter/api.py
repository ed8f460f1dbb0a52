"""The public API beside ``convert``: export a converted model, verify a bundle against it.

Example:
    >>> from converter import convert, export, verify_bundle
    >>> convert("model.onnx", "out/")
    >>> export("out/", "bundle-f16/", ExportOptions(quantize="float16")).weight_bytes
    2431104
    >>> verify_bundle("out/").ok
    True
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from converter.atomic import atomic_output_dir, check_writable
from converter.errors import InputError, ParityError
from converter.export import tfjs_passes
from converter.export.bundle import write_tfjs_bundle
from converter.export.tfjs import ExportOptions
from converter.export.weights import float32_bytes, shard_bytes
from converter.graph.preprocessing import bake_preprocessing as bake
from converter.model import SPEC_FILE, ConvertedModel
from converter.sources import onnx_passes
from converter.verify import ParityReport, tolerance_for
from converter.verify.parity import tensorflow_vs_tfjs


@dataclass(frozen=True)
class ExportResult:
    """What ``export`` wrote.

    Args:
        bundle: the bundle folder.
        bytes: ``model.json`` plus shards.
        weight_bytes: the shards alone; ``float32_bytes``: what they would take as float32.
        quantize: the weight storage mode (``None``: float32).
        parity: the bundle in TF.js vs the float32 SavedModel (``None`` without ``verify``).
    """

    bundle: Path
    bytes: int
    weight_bytes: int
    float32_bytes: int
    quantize: str | None
    parity: ParityReport | None


def export(model_dir, bundle_dir, options: ExportOptions | None = None, overwrite: bool = False, verify: bool = True,
           bake_preprocessing: bool = False, sample_file=None) -> ExportResult:
    """Write the TF.js graph model of ``model_dir`` into ``bundle_dir`` (atomically), then check it in TF.js.

    Args:
        model_dir: a converted model folder (``saved_model/`` + ``spec.json``).
        bundle_dir: the bundle folder to write.
        options: ``ExportOptions`` (quantization, shard size, signature).
        verify: run the bundle in TF.js (Node.js, wasm) against the SavedModel.
        bake_preprocessing: the graph takes raw 0-255 pixels of any size (resize and
            normalization inside), so a JavaScript caller passes decoded images as they are.
        sample_file: a ``.npz`` of real inputs, compared too (e.g. real photos for a quantized bundle).

    Raises:
        ParityError: TF.js differs from TensorFlow beyond the rule of the weight mode (nothing written).
    """
    options = options or ExportOptions()
    inputs = (model_dir, sample_file, *options.calibration_images)
    check_writable(bundle_dir, overwrite, inputs)
    model = ConvertedModel.load(model_dir)
    with tempfile.TemporaryDirectory(prefix="transferjs-export-") as scratch, \
            atomic_output_dir(bundle_dir, overwrite, inputs) as tmp:
        if bake_preprocessing:
            model = bake(model, Path(scratch) / "baked")
        size = write_tfjs_bundle(model, tmp, options)["bytes"]
        parity = None
        if verify:
            # Quantized weights are compared with the float32 SavedModel, by that mode's rule.
            parity = tensorflow_vs_tfjs(model, tmp, tolerance=tolerance_for(options.quantize), sample_file=sample_file)
            if not parity.ok:
                raise ParityError([parity])
        result = ExportResult(Path(bundle_dir), size, shard_bytes(tmp), float32_bytes(tmp), options.quantize, parity)
    return result


def verify_bundle(path, bundle=None, model_dir=None, samples: int = 3, backend: str = "wasm", sample_file=None) -> ParityReport:
    """Run a converted model in TensorFlow and its TF.js bundle in Node.js on the same samples; compare.

    Args:
        path: a converted model folder (its ``tfjs/`` is checked), or a bundle folder inside one.
        bundle: the bundle to check, when not ``path/tfjs``.
        model_dir: the converted model a bundle came from, when not the bundle's parent folder.

    Returns:
        The ``ParityReport`` (the caller decides what failing means).
    """
    path = Path(path)
    if (path / SPEC_FILE).exists():
        bundle_dir, model_dir = Path(bundle or path / "tfjs"), path
    else:
        bundle_dir, model_dir = path, Path(model_dir or path.parent)
    check_bundle_files(bundle_dir)
    model = ConvertedModel.load(model_dir)
    # A quantized bundle is judged by its mode's rule (metadata.json says which mode wrote it).
    meta = bundle_dir / "metadata.json"
    quantization = json.loads(meta.read_text()).get("quantization") if meta.is_file() else None
    mode = quantization.get("mode") if isinstance(quantization, dict) else quantization
    return tensorflow_vs_tfjs(model, bundle_dir, samples=samples, backend=backend, sample_file=sample_file,
                              tolerance=tolerance_for(mode))


def check_bundle_files(bundle_dir) -> None:
    """The bundle's JSON files parse: a bundle whose ``metadata.json`` is damaged does not pass ``verify``.

    Raises:
        InputError: no ``model.json``, or a ``model.json`` / ``metadata.json`` that is not a JSON object.
    """
    bundle_dir = Path(bundle_dir)
    if not (bundle_dir / "model.json").is_file():
        raise InputError(f"Cannot read '{bundle_dir / 'model.json'}' (file not found); expected a TF.js bundle folder "
                         f"(model.json and its shards). Received: '{bundle_dir}'"
                         f"{'' if bundle_dir.is_dir() else ' (no such folder)'}")
    for name in ("model.json", "metadata.json"):
        file = bundle_dir / name
        if not file.exists():
            continue
        try:
            value = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise InputError(f"'{file}' is not valid JSON ({e}); the bundle is damaged: export it again") from None
        if not isinstance(value, dict):
            raise InputError(f"'{file}' is not a JSON object; the bundle is damaged: export it again")


def pass_pipelines() -> dict[str, list]:
    """The named, ordered graph passes: ``{"onnx": [...], "tfjs": [...]}`` (each a function with a docstring).

    ONNX passes run before onnx2tf on ONNX and PyTorch sources; TF.js passes run on every exported
    ``model.json``. ``ConvertOptions.disabled_passes`` / ``ExportOptions.disabled_passes`` skip some by name.
    """
    return {"onnx": list(onnx_passes.PASSES), "tfjs": list(tfjs_passes.PASSES)}


def check_pass_names(names) -> tuple:
    """``names`` as a tuple, after checking each names a pass.

    Raises:
        InputError: unknown names, all listed, with the passes there are.
    """
    known = {p.__name__ for passes in pass_pipelines().values() for p in passes}
    unknown = sorted(set(names) - known)
    if unknown:
        raise InputError(f"Unknown pass(es) {unknown} for --disable-pass; the passes are: {', '.join(sorted(known))} "
                         f"(transferjs passes lists them)")
    return tuple(names)
