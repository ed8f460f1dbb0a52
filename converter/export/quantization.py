"""Choose, weight by weight, where 8-bit quantization is safe.

tensorflowjs quantizes each weight tensor with one affine range (per tensor).
After batch norm is folded into a convolution, output channels of one kernel can
differ in scale by orders of magnitude; one range for all of them rounds the
small channels away. Measured on EfficientNet-Lite0 over 305 real images: all
weights uint8 kept the float32 top-1 on only 25.6 % of them. So ``uint8-per-tensor``
here quantizes a tensor to 8 bits only where every live channel keeps its error under
``MAX_CHANNEL_ERROR`` of that channel's own range, and stores the rest as float16.
``uint8`` (``converter.export.per_channel``) instead gives every output channel its
own range.

Example:
    >>> uint8, float16 = split_uint8_safe(weights)
"""

from __future__ import annotations

import glob

import numpy as np

from converter.export.weights import read_weights

MAX_CHANNEL_ERROR = 0.02  # half a uint8 step, relative to the channel's max |w|
_DEAD = 1e-4  # channels below this fraction of the tensor's max carry (almost) nothing


def uint8_is_safe(w: np.ndarray) -> bool:
    """Does one affine uint8 range keep every live output channel within ``MAX_CHANNEL_ERROR``?"""
    if w.size < 2:
        return False
    step = float(w.max() - w.min()) / 255
    # Output channels: the last axis, but axis 2 of a depthwise kernel [H, W, C, 1].
    axis = 2 if w.ndim == 4 and w.shape[-1] == 1 else w.ndim - 1
    channels = np.abs(np.moveaxis(w, axis, -1).reshape(-1, w.shape[axis])).max(0) if w.ndim > 1 else np.abs(w)
    live = channels[channels > _DEAD * channels.max()] if channels.max() > 0 else channels
    return bool(live.size == 0 or (step / 2 / live.min()) <= MAX_CHANNEL_ERROR)


def split_uint8_safe(weights: dict[str, np.ndarray]) -> tuple[list[str], list[str]]:
    """(names safe as uint8, names to keep as float16)."""
    uint8 = [n for n, w in weights.items() if uint8_is_safe(w)]
    return uint8, [n for n in weights if n not in set(uint8)]


def guarded_uint8_map(float32_bundle) -> dict[str, list[str]]:
    """A tensorflowjs ``quantization_dtype_map`` for ``--quantize uint8-per-tensor``."""
    uint8, float16 = split_uint8_safe(read_weights(float32_bundle))
    qmap = {}
    if uint8:
        qmap["uint8"] = [glob.escape(n) for n in uint8]
    if float16:
        qmap["float16"] = [glob.escape(n) for n in float16]
    return qmap
