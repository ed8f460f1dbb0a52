"""Tensor layouts: channels-first (NCHW, NCW, NCDHW) as the source has them, channels-last as TF.js does.

Example:
    >>> to_layout(np.zeros((1, 3, 8, 4)), "NCHW", "NHWC").shape
    (1, 8, 4, 3)
    >>> converted_layout([1, 3, None, None], [1, None, None, 3])
    ('NCHW', 'NHWC')
"""

from __future__ import annotations

import numpy as np

CHANNELS_LAST = {"NCW": "NWC", "NCHW": "NHWC", "NCDHW": "NDHWC"}


def to_layout(array: np.ndarray, src: str | None, dst: str | None) -> np.ndarray:
    """Move the channel axis between channels-first (NCHW, NCW…) and channels-last.

    Example:
        >>> to_layout(np.zeros((1, 3, 8, 4)), "NCHW", "NHWC").shape
        (1, 8, 4, 3)
    """
    if src == dst or src is None or dst is None:
        return array
    if CHANNELS_LAST.get(src) == dst:
        return np.ascontiguousarray(np.moveaxis(array, 1, -1))
    if CHANNELS_LAST.get(dst) == src:
        return np.ascontiguousarray(np.moveaxis(array, -1, 1))
    raise ValueError(f"unknown layouts {src} -> {dst}")


def channels_first_name(rank: int) -> str | None:
    """``"NCHW"`` for rank 4, ``"NCW"`` for 3, ``"NCDHW"`` for 5, else ``None``."""
    return {3: "NCW", 4: "NCHW", 5: "NCDHW"}.get(rank)


def _dims_match(a, b) -> bool:
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def _static_agreement(a, b) -> int:
    """How many positions hold the same known size in both shapes."""
    return sum(x is not None and x == y for x, y in zip(a, b))


def converted_layout(source_shape, converted_shape) -> tuple[str | None, str | None]:
    """(source layout, converted layout) for a tensor, from its two shapes.

    Same shapes (also when ambiguous, e.g. 8x8x8): no change, ``(None, None)``. The channel axis moved from 1
    to last: ``("NCHW", "NHWC")`` (or the 3-D / 5-D names). Dynamic dims (``None``) match any size, so
    ``[1, 3, None, None]`` fits ``[1, None, None, 3]`` both ways; then the reading under which more known
    sizes agree wins (here the moved one: 1 and 3 both agree), and a tie means no change.

    Example:
        >>> converted_layout([1, 3, None, None], [1, None, None, 3])
        ('NCHW', 'NHWC')
    """
    source_shape, converted_shape = list(source_shape), list(converted_shape)
    first = channels_first_name(len(source_shape))
    moved = source_shape[:1] + source_shape[2:] + source_shape[1:2]
    same_fits = _dims_match(source_shape, converted_shape)
    moved_fits = bool(first) and _dims_match(moved, converted_shape)
    if moved_fits and (not same_fits or _static_agreement(moved, converted_shape) > _static_agreement(source_shape, converted_shape)):
        return first, CHANNELS_LAST[first]
    return None, None
