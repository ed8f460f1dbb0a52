"""Sample images for onnx2tf, made from photos that ship with scikit-image.

onnx2tf 1.28 downloads ``calibration_image_sample_data_20x128x128x3_float32.npy``
from the internet for every model with static-batch image inputs, unless that
file is in its working directory. We write it there ourselves, so conversion
never touches the network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CALIBRATION_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry")


def sample_photos(size: int = 128) -> np.ndarray:
    """Return 20 real RGB photo crops, float32 in [0, 1], shape (20, size, size, 3).

    Four crops (corners cut to a square, then the centre, then flipped) of five
    scikit-image photos, resized with Pillow.

    Example:
        >>> sample_photos().shape
        (20, 128, 128, 3)
    """
    import skimage.data
    from PIL import Image

    crops = []
    for name in _PHOTOS:
        img = getattr(skimage.data, name)()[..., :3]
        h, w = img.shape[:2]
        s = min(h, w)
        squares = [img[:s, :s], img[h - s :, w - s :], img[(h - s) // 2 :, (w - s) // 2 :][:s, :s]]
        squares.append(squares[2][:, ::-1])
        for sq in squares:
            crops.append(np.asarray(Image.fromarray(np.ascontiguousarray(sq)).resize((size, size), Image.BILINEAR)))
    return (np.stack(crops).astype(np.float32) / 255.0)[:20]


def write_calibration_file(folder) -> Path:
    """Write onnx2tf's calibration file into ``folder``; return its path."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.exists():
        np.save(path, sample_photos())
    return path


def calibration_inputs(model) -> dict[str, np.ndarray] | None:
    """The 20 photo crops of ``sample_photos`` as the model's image input, preprocessed as it expects.

    For a model with one float image input whose preprocessing is known (``model.preprocessing``
    with a size, or the input's own static size); ``None`` otherwise (then nothing is calibrated).

    Example:
        >>> calibration_inputs(model)["image"].shape
        (20, 224, 224, 3)
    """
    p = model.preprocessing
    if len(model.inputs) != 1 or p is None or model.inputs[0].layout not in ("NHWC", "NCHW"):
        return None
    spec = model.inputs[0]
    dims = spec.shape[1:3] if spec.layout == "NHWC" else spec.shape[2:4]
    size = tuple(p.size) if p.size else tuple(dims)
    if not all(isinstance(d, int) and d > 0 for d in size) or size[0] != size[1] or not spec.dtype.startswith("float"):
        return None
    pixels = sample_photos(size[0]) * 255.0
    if p.channel_order == "BGR":
        pixels = pixels[..., ::-1]
    x = pixels if p.baked else (pixels * p.scale - np.asarray(p.mean, np.float32)) / np.asarray(p.std, np.float32)
    x = x.astype(np.float32)
    return {spec.name: np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if spec.layout == "NCHW" else x}
