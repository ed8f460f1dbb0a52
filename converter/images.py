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

from pathlib import Path

import numpy as np

from converter.errors import InputError


def load_rgb(path) -> np.ndarray:
    """Decode an image file into uint8 RGB (H, W, 3).

    Raises:
        InputError: the file is missing or not a readable image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
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
