"""``convert``: any source model -> verified SavedModel + TF.js graph model.

Stages, each timed in the report: load the source, convert to a SavedModel,
check parity source <-> TensorFlow, export TF.js, check parity in the TF.js
runtime (Node.js, wasm). Output is written atomically.

Example:
    >>> from converter import convert
    >>> result = convert("mobilenet.onnx", "out/")
    >>> result.report["parity"]["tensorflow"]["ok"]
    True
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from converter.atomic import atomic_output_dir, check_writable
from converter.calibration import find_calibration_images
from converter.description import describe
from converter.errors import ConversionError, InputError, ParityError, TransferJSError, UnsupportedOpsError
from converter.export.bundle import write_tfjs_bundle
from converter.export.layers import write_layers_model
from converter.export.tfjs import ExportOptions
from converter.graph_ops import op_histogram, tfjs_op_histogram
from converter.model import ConvertedModel, Preprocessing
from converter.report import ConversionReport
from converter.sources.registry import load_source_file, torch_batch
from converter.sources.torch import torch_source
from converter.verify import Tolerance, tolerance_for
from converter.verify.divergence import locate_divergence
from converter.verify.parity import layers_vs_source, make_samples, source_vs_tensorflow, source_vs_tfjs


@dataclass(frozen=True)
class ConvertOptions:
    """What ``convert`` does; the defaults suit most models.

    Args:
        input_shapes: ``{input name: [dims]}`` to fix dynamic dims (-1 keeps the batch dynamic).
        batch: ``"auto"`` (as the source), ``"dynamic"`` or ``"static"``.
        keep_layout: keep NCHW image tensors instead of switching to NHWC.
        verify: run the parity checks (source vs TF, TF vs TF.js).
        samples: how many seeded random samples to compare on.
        sample_file: the user's own ``.npz`` sample, compared too.
        seed: seed of the random samples.
        tolerance: atol/rtol every output must meet.
        trust_code: allow files that run code when loaded (pickles, Keras Lambda).
        model_factory, model_kwargs: code that builds the module for a state dict.
        custom_objects: ``package.module:Name`` of custom Keras classes (with ``trust_code``).
        preprocessing: how raw pixels become the image input (recorded in metadata.json).
        labels: class names of the first output, recorded in metadata.json.
        export: TF.js export options; ``None`` writes no bundle.
        backend: TF.js backend for verification (``"wasm"`` or ``"cpu"``).
        verbose: show the frameworks' own logs.
        disabled_passes: names of ONNX graph passes not to run (``converter.api.pass_pipelines`` lists
            them; TF.js passes are disabled in ``export``).
    """

    input_shapes: dict | None = None
    batch: str = "auto"
    keep_layout: bool = False
    verify: bool = True
    samples: int = 3
    sample_file: str | None = None
    seed: int = 0
    tolerance: Tolerance = Tolerance()
    trust_code: bool = False
    model_factory: str | None = None
    model_kwargs: dict | None = None
    custom_objects: tuple = ()
    preprocessing: Preprocessing | None = None
    labels: tuple | None = None
    export: ExportOptions | None = ExportOptions()
    backend: str = "wasm"
    verbose: bool = False
    disabled_passes: tuple = ()


@dataclass(frozen=True)
class ConversionResult:
    """What ``convert`` wrote: the model folder's description, its report, the TF.js bundle."""

    model: ConvertedModel
    report: ConversionReport
    bundle: Path | None = None


def load_source(src, options: ConvertOptions, example_inputs=None, input_names=None, output_names=None):
    """Turn ``src`` (a path, or an ``nn.Module`` with ``example_inputs``) into a ``SourceModel``."""
    if isinstance(src, (str, Path)):
        return load_source_file(src, options)

    if example_inputs is None:
        raise InputError("Converting a PyTorch module needs example_inputs (a tuple of tensors)")
    return torch_source(src, example_inputs, input_names, output_names, batch=torch_batch(options))


def convert(src, out, options: ConvertOptions = ConvertOptions(), overwrite: bool = False, example_inputs=None,
            input_names=None, output_names=None) -> ConversionResult:
    """Convert a model to ``out/saved_model``, ``out/tfjs``, ``out/spec.json`` and ``out/report.json``.

    Args:
        src: a model file (ONNX, PyTorch, Keras, SavedModel folder) or a ``torch.nn.Module``.
        out: the output folder (must not exist unless ``overwrite``); written atomically.
        options: see ``ConvertOptions``.
        example_inputs, input_names, output_names: for an ``nn.Module`` source.

    Returns:
        A ``ConversionResult``.

    Raises:
        InputError: unreadable or unsupported source, bad options.
        UnsupportedOpsError: ops the converter or TF.js lack, all listed.
        ParityError: outputs differ beyond tolerance (every failing output listed).
        OutputExistsError: ``out`` exists and ``overwrite`` is false.
        Each carries ``err.report``: the ``ConversionReport`` as far as the conversion got.
    """
    inputs = [src, options.sample_file] if isinstance(src, (str, os.PathLike)) else [options.sample_file]
    inputs += list(options.export.calibration_images) if options.export else []
    check_writable(out, overwrite, inputs)
    if options.export and options.export.calibration_images:
        find_calibration_images(options.export.calibration_images)  # a bad path fails now, not after the conversion
    report = ConversionReport(versions=library_versions())
    try:
        with report.stage("load_source"):
            source = load_source(src, options, example_inputs, input_names, output_names)
        report.source = source.provenance()
        with tempfile.TemporaryDirectory(prefix="transferjs-") as work, atomic_output_dir(out, overwrite, inputs) as tmp:
            model, bundle = _convert_into(tmp, Path(work), source, options, report)
    except TransferJSError as e:
        e.report = report
        raise
    return ConversionResult(model.moved_to(out), report, Path(out) / "tfjs" if bundle else None)


def _convert_into(tmp: Path, work: Path, source, options: ConvertOptions, report: ConversionReport):
    """The stages after loading, writing into ``tmp``; raises ``ParityError`` after writing the report."""
    with report.stage("to_saved_model"):
        saved, keymap = source.to_saved_model(work, options.keep_layout, options.verbose, options.disabled_passes)
        _move_saved_model(saved, tmp / "saved_model")
        keras_file = source.write_keras_model(tmp / "keras")
    report.source = {**report.source, **source.details}  # what the conversion learned (passes applied, …)
    with report.stage("describe"):
        model = describe(tmp, source, keymap, options.preprocessing, options.labels,
                         keras_model=f"keras/{keras_file}" if keras_file else None)
    report.model = model.to_dict()
    with report.stage("op_histogram"):
        report.op_histogram = op_histogram(tmp / "saved_model")
    failures, samples, ref = [], None, None
    if options.verify:
        samples = make_samples(source.inputs, options.samples, options.seed, options.sample_file, source.sample_dim_size())
        with report.stage("parity_tensorflow"):
            ref, parity = _source_vs_tensorflow(source, model, samples, options, work)
        if not parity.ok and source.bisectable_graph is not None:
            with report.stage("locate_divergence"):
                parity.divergence = _locate(source.bisectable_graph, samples, options, work)
        report.parity["tensorflow"] = parity.to_dict()
        failures += [parity] if not parity.ok else []
    if options.export is not None:
        failures += _export_stages(tmp, model, source, samples, ref, options, report)
    model.save()
    report.write(tmp / "report.json")
    if failures:
        raise ParityError(failures)
    return model, options.export is not None


def _source_vs_tensorflow(source, model, samples, options: ConvertOptions, work: Path):
    """``source_vs_tensorflow``; a graph TensorFlow cannot run becomes a ``ConversionError`` of this stage.

    The message keeps TensorFlow's op and shapes and adds the ONNX node where the graph
    first fails or differs (the divergence locator), where the source has an ONNX graph.
    """
    try:
        return source_vs_tensorflow(source, model, samples, options.tolerance)
    except ConversionError as e:
        if e.stage != "run_tensorflow":
            raise
        where = _locate(source.bisectable_graph, samples, options, work) if source.bisectable_graph is not None else None
        at = f"\n  the converted graph first fails or differs at ONNX node '{where['node']}' ({where['op']})" if where else ""
        raise ConversionError(f"Stage parity_tensorflow (the source vs TensorFlow on the parity samples): {e}{at}",
                              stage="parity_tensorflow") from None


def _export_stages(tmp: Path, model, source, samples, ref, options: ConvertOptions, report: ConversionReport) -> list:
    """TF.js graph model (and layers model when the representation has a Keras file), each checked in TF.js."""
    with report.stage("export_tfjs"):
        written = write_tfjs_bundle(model, tmp / "tfjs", options.export)
    report.tfjs = {"bytes": written["bytes"], "quantize": options.export.quantize, "passes": written["passes"],
                   "op_histogram": tfjs_op_histogram(tmp / "tfjs")}
    if model.keras_model:
        with report.stage("export_tfjs_layers"):
            report.tfjs["layers_model"] = _layers_model(model, tmp / "tfjs" / "layers", source, samples, ref, options)
    if not options.verify:
        return []
    with report.stage("parity_tfjs"):
        tolerance = tolerance_for(options.export.quantize, options.tolerance)
        parity_js = source_vs_tfjs(source, model, tmp / "tfjs", samples, ref, tolerance, options.backend)
    report.parity["tfjs"] = parity_js.to_dict()
    return [parity_js] if not parity_js.ok else []


def _layers_model(model: ConvertedModel, folder: Path, source, samples, ref, options) -> dict:
    """A trainable TF.js layers model from the representation's Keras file, checked in TF.js.

    A model with layers TF.js lacks gets no layers model (the graph model still
    works): the report lists those layers instead of failing the conversion.
    """
    try:
        write_layers_model(model, folder)
    except UnsupportedOpsError as reason:
        return {"written": False, "reason": str(reason)}
    result = {"written": True, "path": "layers/model.json"}
    if samples is not None:
        parity = layers_vs_source(source, folder, samples, ref, options.tolerance, options.backend)
        result["parity"] = parity.to_dict()
        if not parity.ok:
            raise ParityError([parity])
    return result


def _locate(bisectable, samples, options, work: Path):
    graph, names = bisectable
    renamed = [{names.get(k, k): v for k, v in s.items()} for s in samples]
    return locate_divergence(graph, renamed, options.tolerance, work / "divergence", options.verbose)


def _move_saved_model(saved: Path, target: Path) -> None:
    shutil.move(str(saved), str(target))
    for extra in list(target.glob("*.tflite")) + list(target.glob("*.json")):
        extra.unlink()


def library_versions() -> dict:
    """Versions of the converting stack, for the report."""
    from importlib.metadata import PackageNotFoundError, version

    result = {}
    for pkg in ("transferjs", "tensorflow", "tensorflowjs", "onnx", "onnxruntime", "onnx2tf", "onnxsim", "torch", "keras", "numpy"):
        try:
            result[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return result
