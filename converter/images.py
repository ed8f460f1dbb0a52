"""Read image files and preprocess them exactly as the exported bundle does in JavaScript.

Pixels: EXIF orientation applied, grayscale/16-bit/palette converted to 8-bit RGB,
transparency composited onto white (``predict.mjs`` and ``index.html`` do the same).
Resizing: bilinear with half-pixel centers and no antialiasing — ``tf.image.resize``
here, ``tf.image.resizeBilinear(x, size, false, true)`` in TF.js — so Python and
JavaScript feed the model the same numbers.

Example:
    >>> pixels = load_rgb("cat.jpg")          # uint8 (H, W, 3)
    >>> x = preprocess([pixels], Preprocessing(size=(224, 224)), "NHWC")
    >>> x.shape
    (1, 224, 224, 3)
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from converter.errors import InputError

# Image files by name: what retrain reads from class folders and export calibrates on.
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}

# The largest image decoded (width x height), checked from the header before decoding, here and in the
# bundle's decode.mjs: 64 megapixels (8192 x 8192) take ~0.8 GB as float32 RGB. A "decompression bomb" (a small
# file that claims 20000 x 20000 pixels) is refused like any unreadable image instead of filling the memory.
MAX_IMAGE_PIXELS = 64 * 1024 * 1024


def check_image_size(size, path) -> None:
    """Refuse an image whose header claims more than ``MAX_IMAGE_PIXELS`` (or no pixels).

    Raises:
        InputError: naming the file, its claimed size and the limit.
    """
    width, height = size
    if width < 1 or height < 1 or width * height > MAX_IMAGE_PIXELS:
        raise InputError(f"Image '{path}' claims {width}x{height} pixels; the limit is {MAX_IMAGE_PIXELS // 2**20} "
                         f"megapixels (a decompression bomb, or an image to shrink first)")


def open_image(path):
    """``Image.open`` with the size checked from the header, before anything is decoded.

    Raises:
        InputError: more than ``MAX_IMAGE_PIXELS``; PIL's own errors for unreadable files.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():  # our own limit, lower than PIL's warning threshold, speaks instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as e:
        raise InputError(f"Image '{path}' is too large to decode ({e}); the limit is {MAX_IMAGE_PIXELS // 2**20} "
                         f"megapixels (a decompression bomb, or an image to shrink first)") from None
    try:
        check_image_size(img.size, path)
    except InputError:
        img.close()
        raise
    return img


def load_rgb(path) -> np.ndarray:
    """Decode an image file into uint8 RGB (H, W, 3).

    Raises:
        InputError: the file is missing, not a readable image, or claims more than ``MAX_IMAGE_PIXELS``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with open_image(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                a = np.asarray(img, dtype=np.float64)
                img = Image.fromarray((a / max(a.max(), 1) * 255).astype(np.uint8))
            img = img.convert("RGBA")
            white = Image.new("RGBA", img.size, (255, 255, 255, 255))
            return np.asarray(Image.alpha_composite(white, img).convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(f"Cannot read image '{path}': {e}") from None


def resize(img: np.ndarray, size):
    """uint8 (H, W, 3) → float32 (h, w, 3) in 0..255: bilinear, half-pixel centers, no antialiasing."""
    import tensorflow as tf

    return tf.image.resize(tf.convert_to_tensor(img, tf.float32), size, method="bilinear", antialias=False)


def normalize(x, p, layout: str = "NHWC"):
    """Resized 0..255 pixels (N, h, w, 3) → the model's input: ``x * scale - mean) / std``, in ``layout``."""
    import tensorflow as tf

    x = (x * p.scale - np.asarray(p.mean, np.float32)) / np.asarray(p.std, np.float32)
    return tf.transpose(x, (0, 3, 1, 2)) if layout == "NCHW" else x


def preprocess(images: list[np.ndarray], p, layout: str = "NHWC") -> np.ndarray:
    """Resize, scale and normalize uint8 RGB images into one float32 batch.

    Args:
        images: uint8 (H, W, 3) arrays, any sizes.
        p: a ``Preprocessing`` with ``size`` set.
        layout: ``"NHWC"`` or ``"NCHW"`` (the model input's layout).
    """
    import tensorflow as tf

    x = tf.stack([resize(img, p.size) for img in images])
    return np.asarray(normalize(x, p, layout), np.float32)
