"""TF.js graph model from a SavedModel, through the tensorflowjs Python API.

Example:
    >>> saved_model_to_graph_model("out/saved_model", "out/tfjs", ExportOptions(quantize="uint8"))
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from converter.errors import ConversionError, InputError, UnsupportedOpsError

QUANTIZE_MODES = ("float16", "uint8", "uint16")


@dataclass(frozen=True)
class ExportOptions:
    """How to write the TF.js bundle.

    Args:
        quantize: ``None`` (float32), ``"float16"``, ``"uint8"`` or ``"uint16"``.
        quantize_patterns: weight-name glob patterns to quantize (default: all weights).
        shard_size: bytes per weight shard file.
        signature: the SavedModel signature to export.
    """

    quantize: str | None = None
    quantize_patterns: tuple = ("*",)
    shard_size: int = 4 * 1024 * 1024
    signature: str = "serving_default"

    def __post_init__(self):
        if self.quantize not in (None, *QUANTIZE_MODES):
            raise InputError(f"Expected --quantize one of {', '.join(QUANTIZE_MODES)}. Received: '{self.quantize}'")


def saved_model_to_graph_model(saved_model_dir, out_dir, options: ExportOptions = ExportOptions()) -> dict[str, int]:
    """Write ``model.json`` and weight shards for the SavedModel into ``out_dir``.

    Then run the TF.js graph passes (``tfjs_passes``) so the wasm backend runs it.

    Returns:
        ``{pass name: nodes changed}`` for the passes that changed something.

    Raises:
        UnsupportedOpsError: ops TF.js has no kernel for, all listed.
        ConversionError: any other tensorflowjs failure.
    """
    out_dir = Path(out_dir)
    qmap = {options.quantize: list(options.quantize_patterns)} if options.quantize else None
    if options.quantize == "uint8" and tuple(options.quantize_patterns) == ("*",):
        import tempfile

        from converter.export.quantization import guarded_uint8_map

        with tempfile.TemporaryDirectory(prefix="transferjs-f32-") as f32:
            _tfjs_convert(saved_model_dir, f32, None, options)
            qmap = guarded_uint8_map(f32)
    _tfjs_convert(saved_model_dir, out_dir, qmap, options)
    model_json = out_dir / "model.json"
    if not model_json.is_file():
        raise ConversionError(f"tensorflowjs wrote no model.json into '{out_dir}'")
    from converter.export.tfjs_passes import apply_passes

    return apply_passes(model_json)


def _tfjs_convert(saved_model_dir, out_dir, qmap, options: ExportOptions) -> None:
    captured = io.StringIO()
    # tensorflow_decision_forests (imported by tensorflowjs) prints a banner, or
    # with stdout redirected imports IPython to show it as HTML; this switch stops both.
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    try:
        # tensorflowjs and tensorflow_decision_forests print banners and progress on stdout.
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs_conv

            tfjs_conv.convert_tf_saved_model(
                str(saved_model_dir),
                str(out_dir),
                signature_def=options.signature,
                quantization_dtype_map=qmap,
                weight_shard_size_bytes=options.shard_size,
            )
    except ValueError as e:
        ops = _unsupported_ops(str(e))
        if ops:
            raise UnsupportedOpsError("TensorFlow.js 4.22", ops) from None
        raise ConversionError(f"tensorflowjs could not convert '{saved_model_dir}': {e}") from None


def _unsupported_ops(message: str) -> dict[str, list[str]]:
    # tensorflowjs: "Unsupported Ops in the model before optimization\nOpA, OpB"
    if "Unsupported Ops" not in message:
        return {}
    names = message.split("\n", 1)[-1]
    return {op.strip(): ["(TF graph)"] for op in names.split(",") if op.strip()}


def bundle_size(bundle_dir) -> int:
    """Bytes of ``model.json`` plus its weight shards."""
    from converter.export.bundle import shard_bytes

    return (Path(bundle_dir) / "model.json").stat().st_size + shard_bytes(bundle_dir)
