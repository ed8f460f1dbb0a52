"""A TF.js bundle's weights as the manifest in its ``model.json`` describes them: sizes, dtypes, values.

Example:
    >>> shard_bytes("out/tfjs") / float32_bytes("out/tfjs")      # what quantization saved
    0.5
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def weights_manifest(bundle_dir) -> list[dict]:
    """The ``weightsManifest`` of a bundle's ``model.json``."""
    return json.loads((Path(bundle_dir) / "model.json").read_text())["weightsManifest"]


def weight_dtypes(bundle_dir) -> dict[str, int]:
    """How many weight tensors the bundle stores in each dtype (uint8, float16, float32, …)."""
    counts: dict[str, int] = {}
    for w in (w for group in weights_manifest(bundle_dir) for w in group["weights"]):
        dtype = w.get("quantization", {}).get("dtype", w["dtype"])
        counts[dtype] = counts.get(dtype, 0) + 1
    return counts


def weight_storage(bundle_dir) -> dict[str, str]:
    """How each weight tensor is stored: ``"uint8 per output channel"``, ``"uint8"`` (one range
    per tensor), ``"float16"``, ``"float32"`` …

    A kernel is per-channel when the bundle holds its scale vector ``<name>/channel_scale``
    (``converter.export.per_channel``).
    """
    specs = [w for group in weights_manifest(bundle_dir) for w in group["weights"]]
    names = {w["name"] for w in specs}
    storage = {}
    for w in specs:
        dtype = w.get("quantization", {}).get("dtype", w["dtype"])
        storage[w["name"]] = f"{dtype} per output channel" if w["name"] + "/channel_scale" in names else dtype
    return storage


def shard_bytes(bundle_dir) -> int:
    """Bytes of the weight shards alone (what quantization shrinks)."""
    return sum((Path(bundle_dir) / p).stat().st_size for group in weights_manifest(bundle_dir) for p in group["paths"])


def float32_bytes(bundle_dir) -> int:
    """What the bundle's weights take as float32: the base of the quantization ratio."""
    return sum(4 * int(np.prod(w["shape"])) for group in weights_manifest(bundle_dir) for w in group["weights"])


def read_weights(bundle_dir) -> dict[str, np.ndarray]:
    """The float32 weights of a TF.js bundle, by name."""
    bundle_dir = Path(bundle_dir)
    manifest = weights_manifest(bundle_dir)
    data = b"".join((bundle_dir / p).read_bytes() for group in manifest for p in group["paths"])
    weights, offset = {}, 0
    for group in manifest:
        for w in group["weights"]:
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            size = n * (1 if w["dtype"] in ("bool", "uint8") else 4)
            if w["dtype"] == "float32" and "quantization" not in w:
                weights[w["name"]] = np.frombuffer(data[offset : offset + size], np.float32).reshape(w["shape"])
            offset += size
    return weights
