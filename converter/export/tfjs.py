"""TF.js graph model from a SavedModel, through the tensorflowjs Python API.

Example:
    >>> saved_model_to_graph_model("out/saved_model", "out/tfjs", ExportOptions(quantize="uint8"))
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from converter.errors import ConversionError, InputError, UnsupportedOpsError
from converter.export.per_channel import quantize_per_channel
from converter.export.quantization import guarded_uint8_map
from converter.export.tensorflowjs_runner import convert_saved_model, onednn_enabled, run_in_child
from converter.export.tfjs_ops import check_runtime_support
from converter.export.tfjs_passes import apply_passes
from converter.export.weights import shard_bytes

# uint8: per-output-channel 8-bit kernels (``per_channel``); uint8-per-tensor: tensorflowjs'
# one range per tensor, where that keeps every channel (``quantization``), float16 elsewhere.
QUANTIZE_MODES = ("float16", "uint8", "uint8-per-tensor", "uint16")


@dataclass(frozen=True)
class ExportOptions:
    """How to write the TF.js bundle.

    Args:
        quantize: ``None`` (float32), ``"float16"``, ``"uint8"`` (kernels 8-bit per output
            channel, the rest float16), ``"uint8-per-tensor"`` (tensorflowjs' 8-bit, one range
            per tensor, where safe) or ``"uint16"``.
        quantize_patterns: weight-name glob patterns to quantize (default: all weights; not
            for ``"uint8"``, which chooses tensor by tensor).
        shard_size: bytes per weight shard file.
        signature: the SavedModel signature to export.
        disabled_passes: names of TF.js graph passes not to run (``transferjs passes`` lists them).
        calibrate: ``"uint8"`` only: round each kernel by its layer's output error on the
            calibration photos (GPTQ, ``calibrated_rounding``) and correct its bias, where the
            model's image preprocessing is known; ``False``: nearest rounding.
        restore_at_load: ``"uint8"`` only: the per-channel kernels are restored once, when the
            model first runs (the model.json initializer graph), not by one ``Mul`` per kernel per
            run; the graph that runs is then the float32 one. Its first run must not be inside
            ``tf.tidy`` (``converter.tfjs_initializer``).
        calibration_images: ``"uint8"`` only: image files or folders (searched recursively) to
            calibrate on instead of the photos, e.g. the images a model was retrained on; at most
            ``calibration.MAX_CALIBRATION_IMAGES`` of them (a seeded choice), preprocessed as the
            model expects.
    """

    quantize: str | None = None
    quantize_patterns: tuple = ("*",)
    shard_size: int = 4 * 1024 * 1024
    signature: str = "serving_default"
    disabled_passes: tuple = ()
    calibrate: bool = True
    restore_at_load: bool = False
    calibration_images: tuple = ()

    def __post_init__(self):
        if self.quantize not in (None, *QUANTIZE_MODES):
            raise InputError(f"Expected --quantize one of {', '.join(QUANTIZE_MODES)}. Received: '{self.quantize}'")
        if self.restore_at_load and self.quantize != "uint8":
            raise InputError(f"--restore-at-load applies to --quantize uint8 only. Received: --quantize {self.quantize or 'none'}")
        object.__setattr__(self, "calibration_images", tuple(str(p) for p in self.calibration_images))
        if self.calibration_images and (self.quantize != "uint8" or not self.calibrate):
            received = "calibrate=False" if self.quantize == "uint8" else f"--quantize {self.quantize or '(none: float32)'}"
            raise InputError(f"--calibration-images calibrates the rounding of --quantize uint8 only. Received: {received} "
                             f"with --calibration-images {' '.join(self.calibration_images)}")


def saved_model_to_graph_model(saved_model_dir, out_dir, options: ExportOptions = ExportOptions(),
                               calibration: dict | None = None) -> dict[str, int]:
    """Write ``model.json`` and weight shards for the SavedModel into ``out_dir``.

    ``calibration`` (``{signature input: batch}``) is what ``--quantize uint8`` rounds by
    (``per_channel``); ``None``: nearest rounding.

    Then run the TF.js graph passes (``tfjs_passes``) so the wasm backend runs it,
    and check every op against what the installed TF.js runtime supports (``tfjs_ops``).

    Returns:
        ``{pass name: nodes changed}`` for the passes that changed something.

    Raises:
        UnsupportedOpsError: ops (or fused-op combinations) TF.js cannot run, all listed.
        ConversionError: any other tensorflowjs failure.
    """
    out_dir = Path(out_dir)
    per_channel = options.quantize == "uint8"
    qmap = {options.quantize: list(options.quantize_patterns)} if options.quantize and not per_channel else None
    if options.quantize == "uint8-per-tensor" and tuple(options.quantize_patterns) == ("*",):
        with tempfile.TemporaryDirectory(prefix="transferjs-f32-") as f32:
            _tfjs_convert(saved_model_dir, f32, None, options)
            qmap = guarded_uint8_map(f32)
    if qmap and "uint8-per-tensor" in qmap:
        qmap["uint8"] = qmap.pop("uint8-per-tensor")
    _tfjs_convert(saved_model_dir, out_dir, qmap, options)
    model_json = out_dir / "model.json"
    if not model_json.is_file():
        raise ConversionError(f"tensorflowjs wrote no model.json into '{out_dir}'")
    restore_signature_keys(model_json, saved_model_dir, options.signature)
    applied = apply_passes(model_json, options.disabled_passes)
    if per_channel:
        applied.update({f"quantize_per_channel:{k}": v for k, v in quantize_per_channel(
            out_dir, options.shard_size, calibration if options.calibrate else None, options.restore_at_load).items()})
    check_runtime_support(model_json)
    return applied


def restore_signature_keys(model_json, saved_model_dir, signature: str = "serving_default") -> int:
    """Key ``model.json``'s signature inputs and outputs by the SavedModel's names.

    tensorflowjs finds each name by dtype and shape (``_find_signature_def_name``);
    tensors that share both keep the frozen tensor's name, e.g. ``Identity_1:0``, and
    TF.js then has no output ``softmax_c`` (or inputs ``input_ids:0`` and
    ``attention_mask:0``). The frozen graph's ``Identity_k`` is the function's k-th
    output, which the SavedModel's signature names ``<call>:k``; that index gives the
    key back. An input ``name:0`` gets its key ``name``.

    Returns:
        How many inputs and outputs were renamed.

    Raises:
        ConversionError: an output's key cannot be recovered.
    """
    import json
    import re

    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((Path(saved_model_dir) / "saved_model.pb").read_bytes())
    outputs = saved.meta_graphs[0].signature_def[signature].outputs
    inputs = saved.meta_graphs[0].signature_def[signature].inputs
    by_index = {int(info.name.rsplit(":", 1)[1]): key for key, info in outputs.items()}
    model = json.loads(Path(model_json).read_text())
    sig_inputs = model.get("signature", {}).get("inputs", {})
    fixed_inputs = {k.split(":")[0] if k not in inputs and k.split(":")[0] in inputs else k: v for k, v in sig_inputs.items()}
    entries = model.get("signature", {}).get("outputs", {})
    renamed, unknown = {}, []
    for key, entry in entries.items():
        if key in outputs:
            renamed[key] = entry
            continue
        match = re.fullmatch(r"Identity(?:_(\d+))?:0", entry.get("name", ""))
        index = int(match.group(1) or 0) if match else None
        if index not in by_index or by_index[index] in entries:
            unknown.append(key)
        else:
            renamed[by_index[index]] = entry
    if unknown:
        raise ConversionError(f"model.json names outputs {unknown}; expected the SavedModel's {sorted(outputs)}")
    count = sum(k not in entries for k in renamed) + sum(k not in sig_inputs for k in fixed_inputs)
    if count:
        model["signature"]["outputs"], model["signature"]["inputs"] = renamed, fixed_inputs
        Path(model_json).write_text(json.dumps(model))
    return count


def _tfjs_convert(saved_model_dir, out_dir, qmap, options: ExportOptions) -> None:
    """Run tensorflowjs' SavedModel converter, where oneDNN's graph rewrites cannot reach it.

    TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` once, at start-up, and with oneDNN on its
    grappler emits fused ops no TF.js backend has. When this process runs with oneDNN on
    (the caller's environment, or the default on CPUs with AVX512-VNNI/AMX), the
    conversion runs in a child process with it off; otherwise here.

    Raises:
        UnsupportedOpsError: ops tensorflowjs has no TF.js mapping for.
        ConversionError: any other tensorflowjs failure.
    """
    request = {"saved_model_dir": str(saved_model_dir), "out_dir": str(out_dir), "signature": options.signature,
               "quantization_dtype_map": qmap, "shard_size": options.shard_size}
    verdict = run_in_child(request) if onednn_enabled() else convert_saved_model(request)
    if verdict["ok"]:
        return
    ops = _unsupported_ops(verdict["error"])
    if ops:
        raise UnsupportedOpsError("TensorFlow.js 4.22", ops)
    raise ConversionError(f"tensorflowjs could not convert '{saved_model_dir}': {verdict['error']}")


def _unsupported_ops(message: str) -> dict[str, list[str]]:
    # tensorflowjs: "Unsupported Ops in the model before optimization\nOpA, OpB"
    if "Unsupported Ops" not in message:
        return {}
    names = message.split("\n", 1)[-1]
    return {op.strip(): ["(TF graph)"] for op in names.split(",") if op.strip()}


def bundle_size(bundle_dir) -> int:
    """Bytes of ``model.json`` plus its weight shards."""
    return (Path(bundle_dir) / "model.json").stat().st_size + shard_bytes(bundle_dir)
