"""Per-image randomness for fine-tuning that does not depend on which worker sees the image.

Every random choice for an image — its flip, rotation, zoom, brightness and contrast, its mixup
partner and share, and the head's dropout mask on its features — comes from stateless random ops
seeded by the image's **key**: ``(seed, epoch, position in the epoch's global order)``. The same key gives the same numbers in any
process, batch or shard, so 1 worker and N workers (each seeing a different slice of a global batch)
train on the same augmented examples.

Example:
    >>> key = example_key(seed=0, epoch=1, position=7)      # int64 [2], the same on every worker
    >>> image = augment_image(pixels, key)                  # 0..255 in, 0..255 out
    >>> mask = dropout_mask(key, rate=0.2, dim=1280)        # 0 or 1 / (1 - rate)
"""

from __future__ import annotations

import math

import numpy as np

ROTATION = 0.05 * 2 * math.pi  # ±18°, as keras.layers.RandomRotation(0.05)
ZOOM = 0.1  # ±10 %
BRIGHTNESS = 0.1 * 255  # ± on 0..255 pixels
CONTRAST = 0.1  # the contrast factor in [0.9, 1.1]
_STREAMS = 6  # independent sub-seeds of a key: flip, angle, zoom, brightness, contrast, dropout


def example_key(seed: int, epoch: int, position: int) -> np.ndarray:
    """The stateless seed of one training example: ``[seed, epoch * 2**32 + position]`` (int64).

    Example:
        >>> example_key(0, 1, 7)
        array([         0, 4294967303])
    """
    return np.array([seed, (epoch << 32) + position], np.int64)


def _streams(key):
    import tensorflow as tf

    return tf.unstack(tf.random.experimental.stateless_split(key, _STREAMS))


def augment_image(image, key):
    """Flip, rotation (±18°), zoom (±10 %), brightness and contrast (±10 %) of one HWC 0..255 image.

    Args:
        image: float32 (height, width, 3), 0..255.
        key: the example's ``example_key`` (a [2] int64 tensor).

    Returns:
        The augmented image, float32, same shape, clipped to 0..255.

    Example:
        >>> augment_image(tf.zeros((64, 64, 3)), example_key(0, 0, 0)).shape
        TensorShape([64, 64, 3])
    """
    import tensorflow as tf

    flip, angle, zoom, brightness, contrast, _ = _streams(key)
    image = tf.image.stateless_random_flip_left_right(image, flip)
    theta = tf.random.stateless_uniform((), angle, -ROTATION, ROTATION)
    scale = tf.random.stateless_uniform((), zoom, 1 - ZOOM, 1 + ZOOM)
    image = _rotate_and_zoom(image, theta, scale)
    image = tf.image.stateless_random_brightness(image, BRIGHTNESS, brightness)
    image = tf.image.stateless_random_contrast(image, 1 - CONTRAST, 1 + CONTRAST, contrast)
    return tf.clip_by_value(image, 0.0, 255.0)


def _rotate_and_zoom(image, theta, scale):
    """One projective warp about the centre: output pixel p reads input ``scale * R(theta) (p - c) + c``."""
    import tensorflow as tf

    h, w = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    a0, a1 = scale * tf.cos(theta), -scale * tf.sin(theta)
    b0, b1 = scale * tf.sin(theta), scale * tf.cos(theta)
    transform = tf.stack([a0, a1, cx - a0 * cx - a1 * cy, b0, b1, cy - b0 * cx - b1 * cy, 0.0, 0.0])
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=transform[None], output_shape=tf.shape(image)[:2], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="NEAREST")
    return warped[0]


def mixup_pair(key, count: int, concentration: float) -> tuple[int, float]:
    """The mixup partner (an index into the ``count`` training items) and the example's own share ``lam``.

    ``lam = max(l, 1 - l)`` with ``l ~ Beta(concentration, concentration)``, so the example's own label
    stays the larger part of its target. ``concentration <= 0`` (mixup off): ``(-1, 1.0)``. Drawn with
    NumPy from the key alone: every worker computes the same pair.

    Example:
        >>> mixup_pair(example_key(0, 0, 7), 100, 0.4)
        (69, 0.898...)
    """
    if concentration <= 0:
        return -1, 1.0
    rng = np.random.default_rng([int(k) & 0xFFFFFFFFFFFFFFFF for k in np.asarray(key)] + [0x6D6978])
    share = float(rng.beta(concentration, concentration))
    return int(rng.integers(count)), max(share, 1.0 - share)


def dropout_mask(key, rate: float, dim: int):
    """The head's dropout on one example's features: each unit kept with ``1 - rate``, scaled by ``1 / (1 - rate)``.

    Example:
        >>> dropout_mask(example_key(0, 0, 0), 0.5, 4).numpy()
        array([0., 0., 0., 2.], dtype=float32)
    """
    import tensorflow as tf

    if rate <= 0:
        return tf.ones((dim,), tf.float32)
    keep = tf.random.stateless_uniform((dim,), _streams(key)[5]) >= rate
    return tf.cast(keep, tf.float32) / (1 - rate)
