"""Detect a model file's format from its content, not its name.

Example:
    >>> detect_format("model.bin")
    'onnx'
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from converter.errors import InputError
from converter.sources.tfjs_files import is_tfjs_json

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_BY_SUFFIX = {".onnx": "onnx", ".pt": "pytorch", ".pth": "pytorch", ".pt2": "pytorch", ".keras": "keras", ".h5": "keras"}


def detect_format(path) -> str:
    """Return ``"onnx"``, ``"pytorch"``, ``"keras"``, ``"saved_model"`` or ``"tfjs"``.

    Raises:
        InputError: missing, empty or unrecognised file; the message shows its first bytes.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "saved_model"
        if (path / "model.json").is_file():
            return "tfjs"
        raise InputError(f"Expected a model file, a SavedModel folder or a TF.js model folder. Received: folder '{path}' "
                         f"without saved_model.pb or model.json")
    if not path.exists():
        raise InputError(f"Model file '{path}' not found")
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise InputError(f"Expected an ONNX, Keras or PyTorch model file. Received: '{path}' (empty file)")
    if head.lstrip()[:1] == b"{" and _is_tfjs_model_json(path):
        return "tfjs"
    if head.startswith(HDF5_MAGIC):
        return "keras"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if "config.json" in names and any(n.endswith(".weights.h5") for n in names):
            return "keras"
        if any(n.endswith("data.pkl") or n.endswith("constants.pkl") or "serialized_exported_program" in n or n.endswith("/version") for n in names):
            return "pytorch"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pytorch"  # a legacy (non-zip) torch.save pickle
    if head[:1] == b"\x08" and _parses_as_onnx(path):  # field 1 (ir_version), varint
        return "onnx"
    if path.suffix.lower() == ".json":
        return "tfjs"  # JSON, but not a TF.js model.json: its reader says what is missing
    if path.suffix.lower() in _BY_SUFFIX:
        # Content unrecognised (truncated, corrupt): the format's own reader says precisely why.
        return _BY_SUFFIX[path.suffix.lower()]
    raise InputError(
        f"Expected an ONNX, Keras or PyTorch model file. Received: '{path}' "
        f"(starts with bytes {head[:8].hex(' ')})"
    )


def _parses_as_onnx(path: Path) -> bool:
    import onnx

    try:
        m = onnx.load_model(str(path), load_external_data=False)
    except Exception:
        return False
    return bool(m.graph.node) or bool(m.graph.output)


def _is_tfjs_model_json(path: Path) -> bool:
    try:
        return is_tfjs_json(json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
