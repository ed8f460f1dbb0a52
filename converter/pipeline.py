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

import json
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from converter.atomic import atomic_output_dir, check_writable
from converter.errors import InputError, ParityError
from converter.export.tfjs import ExportOptions
from converter.model import ConvertedModel, Preprocessing, TensorSpec
from converter.verify import Tolerance

RUNTIME_OF = {"onnx": "onnxruntime", "pytorch": "torch", "keras": "keras", "saved_model": "tensorflow (source SavedModel)"}


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


@dataclass
class ConversionResult:
    """What ``convert`` wrote: the model folder, its report, the TF.js bundle."""

    model: ConvertedModel
    report: dict
    bundle: Path | None = None


@dataclass
class _Timer:
    seconds: dict = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 3)


def load_source(src, options: ConvertOptions, example_inputs=None, input_names=None, output_names=None):
    """Turn ``src`` (a path, or an ``nn.Module`` with ``example_inputs``) into a ``SourceModel``."""
    from converter.sources.detect import detect_format

    batch = "dynamic" if options.batch == "auto" else options.batch
    if not isinstance(src, (str, Path)):
        from converter.sources.torch import torch_source

        if example_inputs is None:
            raise InputError("Converting a PyTorch module needs example_inputs (a tuple of tensors)")
        return torch_source(src, example_inputs, input_names, output_names, batch=batch)
    fmt = detect_format(src)
    if fmt == "onnx":
        from converter.sources.onnx import load_onnx_source

        return load_onnx_source(src, options.input_shapes, options.batch, options.sample_file)
    if fmt == "pytorch":
        from converter.sources.torch import load_torch_file

        return load_torch_file(src, options.input_shapes, options.model_factory, options.model_kwargs, options.trust_code, batch)
    from converter.sources.keras import SavedModelSource, load_keras_source

    if fmt == "keras":
        return load_keras_source(src, options.trust_code, options.custom_objects)
    return SavedModelSource(Path(src))


def convert(src, out, options: ConvertOptions = ConvertOptions(), overwrite: bool = False, example_inputs=None, input_names=None, output_names=None) -> ConversionResult:
    """Convert a model to ``out/saved_model``, ``out/tfjs`` and ``out/report.json``.

    Args:
        src: a model file (ONNX, PyTorch) or a ``torch.nn.Module``.
        out: the output folder (must not exist unless ``overwrite``).
        options: see ``ConvertOptions``.
        example_inputs, input_names, output_names: for an ``nn.Module`` source.

    Returns:
        A ``ConversionResult``.

    Raises:
        InputError: unreadable or unsupported source, bad options.
        UnsupportedOpsError: ops the converter or TF.js lack, all listed.
        ParityError: outputs differ beyond tolerance (every failing output listed).
        OutputExistsError: ``out`` exists and ``overwrite`` is false.
    """
    check_writable(out, overwrite)
    timer = _Timer()
    with timer.stage("load_source"):
        source = load_source(src, options, example_inputs, input_names, output_names)
    with tempfile.TemporaryDirectory(prefix="transferjs-") as work, atomic_output_dir(out, overwrite) as tmp:
        with timer.stage("to_saved_model"):
            saved, keymap = source.to_saved_model(Path(work), options.keep_layout, options.verbose)
            _move_saved_model(saved, tmp / "saved_model")
        model = _describe(tmp, source, keymap)
        model.preprocessing = options.preprocessing
        model.labels = list(options.labels) if options.labels else None
        report = {"source": source.provenance(), "versions": library_versions(), "parity": {}}
        with timer.stage("op_histogram"):
            from converter.graph_ops import op_histogram

            report["op_histogram"] = op_histogram(tmp / "saved_model")
        failures = []
        if options.verify:
            from converter.parity_run import source_vs_tensorflow

            with timer.stage("parity_tensorflow"):
                samples, ref, parity = source_vs_tensorflow(source, model, options)
            if not parity.ok and getattr(source, "converted_onnx", None) is not None:
                with timer.stage("locate_divergence"):
                    parity.divergence = _locate(source, samples, options, Path(work))
            report["parity"]["tensorflow"] = parity.to_dict()
            failures += [parity] if not parity.ok else []
        bundle = None
        if options.export is not None:
            from converter.export import write_tfjs_bundle
            from converter.graph_ops import tfjs_op_histogram

            with timer.stage("export_tfjs"):
                written = write_tfjs_bundle(model, tmp / "tfjs", options.export)
            bundle = Path(out) / "tfjs"
            report["tfjs"] = {
                "bytes": written["bytes"],
                "quantize": options.export.quantize,
                "passes": written["passes"],
                "op_histogram": tfjs_op_histogram(tmp / "tfjs"),
            }
            if source.format == "keras":
                with timer.stage("export_tfjs_layers"):
                    report["tfjs"]["layers_model"] = _layers_model(source, tmp / "tfjs" / "layers", samples if options.verify else None, ref if options.verify else None, options)
            if options.verify:
                from converter.parity_run import source_vs_tfjs

                with timer.stage("parity_tfjs"):
                    parity_js = source_vs_tfjs(source, model, tmp / "tfjs", samples, ref, options)
                report["parity"]["tfjs"] = parity_js.to_dict()
                failures += [parity_js] if not parity_js.ok else []
        report["model"] = model.to_dict()
        report["seconds"] = timer.seconds
        model.save()
        (tmp / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
        if failures:
            raise ParityError(failures)
    model.directory = Path(out)
    return ConversionResult(model, report, bundle)


def _layers_model(source, folder: Path, samples, ref, options) -> dict:
    """Also write a trainable TF.js layers model for a Keras source; check it in TF.js.

    A model with layers TF.js lacks gets no layers model (the graph model still
    works): the report lists those layers instead of failing the conversion.
    """
    from converter.errors import UnsupportedOpsError
    from converter.export.layers import keras_to_layers_model, unsupported_layers
    from converter.parity_run import layers_vs_source

    missing = unsupported_layers(source.model)
    if missing:
        reason = UnsupportedOpsError("TF.js layers 4.22 (the graph model works)", missing, ("layer class", "layer"))
        return {"written": False, "reason": str(reason)}
    keras_to_layers_model(source.model, folder)
    result = {"written": True, "path": "layers/model.json"}
    if samples is not None:
        parity = layers_vs_source(source, folder, samples, ref, options)
        result["parity"] = parity.to_dict()
        if not parity.ok:
            raise ParityError([parity])
    return result


def _locate(source, samples, options, work: Path):
    from converter.divergence import locate_divergence

    names = source.converted_names
    renamed = [{names.get(k, k): v for k, v in s.items()} for s in samples]
    return locate_divergence(source.converted_onnx, renamed, options.tolerance, work / "divergence", options.verbose)


def _move_saved_model(saved: Path, target: Path) -> None:
    shutil.move(str(saved), str(target))
    for extra in list(target.glob("*.tflite")) + list(target.glob("*.json")):
        extra.unlink()


def _describe(folder: Path, source, keymap: dict[str, str]) -> ConvertedModel:
    """Build the typed description from the SavedModel's signature and the source's IO."""
    from converter.runtimes.tensorflow import signature_specs
    from converter.samples import converted_layout

    tf_ins, tf_outs = signature_specs(folder / "saved_model")
    by_name = {s.name: s for s in source.inputs}
    inputs = []
    for key, (shape, dtype) in tf_ins.items():
        src = by_name[keymap.get(key, key)]
        src_layout, layout = converted_layout(src.shape, shape)
        inputs.append(TensorSpec(key, shape, dtype, layout or src.layout, src.name, src_layout or src.layout, src.value_range))
    order = {n: i for i, n in enumerate(source.output_names)}
    outputs = [TensorSpec(key, shape, dtype, None, keymap.get(key, key)) for key, (shape, dtype) in tf_outs.items()]
    outputs.sort(key=lambda t: order.get(t.source_name, len(order)))
    inputs.sort(key=lambda t: [s.name for s in source.inputs].index(t.source_name))
    return ConvertedModel(folder, inputs, outputs, source=source.provenance())


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
