"""A TF.js model on disk: ``model.json`` and its weight shards, checked and read into arrays.

TF.js writes a model as one JSON file (``modelTopology``: a Keras config for layers models, a
GraphDef for graph models; ``weightsManifest``: groups of shard files and the weights they
hold, in order) and binary shards. Weights may be stored quantized (``uint8``/``uint16`` with a
``scale`` and ``min`` per tensor, or ``float16``); they are read back as TF.js reads them.

Example:
    >>> files = read_tfjs_files("nsfw/model.json")
    >>> files.kind, len(files.weights)
    ('graph', 108)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converter.errors import InputError

_STORED = {"float32": np.float32, "int32": np.int32, "uint8": np.uint8, "uint16": np.uint16, "float16": np.float16,
           "bool": np.uint8}


@dataclass
class TfjsFiles:
    """A read TF.js model.

    Args:
        path: the ``model.json`` file.
        json: its content.
        kind: ``"layers"`` or ``"graph"``.
        weights: ``{weight name: float32/int32/bool array}``, dequantized, in manifest order.
    """

    path: Path
    json: dict
    kind: str
    weights: dict


def model_json_path(path) -> Path:
    """``path`` itself, or the ``model.json`` inside a folder."""
    path = Path(path)
    return path / "model.json" if path.is_dir() else path


def is_tfjs_json(data) -> bool:
    """Whether parsed JSON looks like a TF.js model.json."""
    return isinstance(data, dict) and isinstance(data.get("modelTopology"), dict) and isinstance(data.get("weightsManifest"), list)


def model_kind(data: dict) -> str:
    """``"layers"`` (a Keras topology, also Keras 2.x's ``model_config`` wrapper) or ``"graph"`` (a GraphDef)."""
    topology = data["modelTopology"]
    if data.get("format") == "layers-model" or "class_name" in topology or "model_config" in topology:
        return "layers"
    return "graph"


def read_json(path: Path) -> dict:
    """The parsed model.json; ``InputError`` naming the file when it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"TF.js model file '{path}' not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"Expected a TF.js model.json. Received: '{path}' ({e})") from None
    if not is_tfjs_json(data):
        keys = ", ".join(sorted(data)[:8]) if isinstance(data, dict) else type(data).__name__
        raise InputError(f"Expected a TF.js model.json with 'modelTopology' and 'weightsManifest'. Received: '{path}' (keys: {keys})")
    return data


def _stored_bytes(spec: dict) -> int:
    count = int(np.prod(spec.get("shape") or [], dtype=np.int64))
    dtype = (spec.get("quantization") or {}).get("dtype") or spec.get("dtype", "float32")
    if dtype not in _STORED:
        raise InputError(f"Weight '{spec.get('name')}' has dtype '{dtype}'; expected one of {', '.join(sorted(_STORED))}")
    return count * np.dtype(_STORED[dtype]).itemsize


def _dequantize(raw: bytes, spec: dict) -> np.ndarray:
    """One weight as TF.js loads it: ``min + scale * q`` for uint8/uint16, float16 widened."""
    q = spec.get("quantization")
    dtype = spec.get("dtype", "float32")
    shape = [int(d) for d in spec.get("shape") or []]
    if not q:
        a = np.frombuffer(raw, _STORED[dtype]).reshape(shape)
        return a.astype(bool) if dtype == "bool" else a.copy()
    stored = np.frombuffer(raw, _STORED[q["dtype"]]).reshape(shape)
    if q["dtype"] == "float16":
        values = stored.astype(np.float32)
    else:
        values = stored.astype(np.float32) * np.float32(q["scale"]) + np.float32(q["min"])
    return np.round(values).astype(np.int32) if dtype == "int32" else values.astype(np.float32)


def _read_group(folder: Path, model_json: Path, group: dict) -> dict:
    paths, specs = group.get("paths") or [], group.get("weights") or []
    chunks = []
    for p in paths:
        shard = folder / p
        if not shard.is_file():
            raise InputError(f"Weight shard '{shard}' named in '{model_json}' is missing")
        chunks.append(shard.read_bytes())
    data = b"".join(chunks)
    expected = sum(_stored_bytes(s) for s in specs)
    if len(data) != expected:
        shown = ", ".join(f"'{folder / p}'" for p in paths)
        raise InputError(f"Weight shards {shown} hold {len(data)} bytes; '{model_json}' expects {expected} "
                         f"for {len(specs)} weights (a {'short' if len(data) < expected else 'long'} or wrong shard)")
    weights, offset = {}, 0
    for spec in specs:
        size = _stored_bytes(spec)
        weights[spec["name"]] = _dequantize(data[offset:offset + size], spec)
        offset += size
    return weights


def read_tfjs_files(path) -> TfjsFiles:
    """Read ``model.json`` (or a folder with one) and every shard it names.

    Raises:
        InputError: not a TF.js model.json, a shard missing, shards shorter or longer than the manifest says.
    """
    model_json = model_json_path(path)
    data = read_json(model_json)
    weights: dict = {}
    for group in data["weightsManifest"]:
        weights.update(_read_group(model_json.parent, model_json, group))
    return TfjsFiles(model_json, data, model_kind(data), weights)
