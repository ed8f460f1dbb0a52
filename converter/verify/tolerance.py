"""The one tolerance table: what "the same" means for each way a bundle stores its weights.

A rule judges values element-wise (``atol``/``rtol``) and, for classifier outputs,
may also require top-1 agreement. Every bound is finite: a check that cannot fail
checks nothing. Looser rules are named here, never scattered in tests.

Example:
    >>> TOLERANCES["float16"].atol
    0.02
    >>> tolerance_for("float32", Tolerance(atol=1e-3))   # the user's own bound for float32
    Tolerance(atol=0.001, rtol=0.001, min_top1=None)
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """An output passes when ``|a - b| <= atol + rtol * |a|`` everywhere (``a`` the reference).

    Args:
        atol: absolute tolerance (finite, >= 0).
        rtol: relative tolerance (finite, >= 0).
        min_top1: for classifier outputs (2-D float, more than one column), the least
            fraction of rows whose argmax must agree; ``None``: not checked.

    Raises:
        ValueError: a bound that is negative, infinite or NaN.
    """

    atol: float = 1e-4
    rtol: float = 1e-3
    min_top1: float | None = None

    def __post_init__(self):
        bounds = {"atol": self.atol, "rtol": self.rtol, **({"min_top1": self.min_top1} if self.min_top1 is not None else {})}
        bad = [f"{k}={v!r}" for k, v in bounds.items() if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0)]
        if bad:
            raise ValueError(f"Expected finite, non-negative tolerances. Received: {', '.join(bad)}")


# Named rules. Default: float32 kernels of two runtimes, same graph.
TOLERANCES = {
    "float32": Tolerance(),
    # ONNX's backend node tests (bench/onnx_conformance.py): one op against ONNX's expected outputs.
    "conformance": Tolerance(atol=1e-4, rtol=1e-3),
    # float16 weights keep ~3 significant digits; errors add up over a deep net.
    "float16": Tolerance(atol=2e-2, rtol=2e-2),
    # 16-bit affine weights: a 65536-step range per tensor.
    "uint16": Tolerance(atol=5e-2, rtol=5e-2),
    # 8-bit affine weights: values move by a few percent of each output's range; judged
    # mostly by top-1 agreement on the samples.
    "uint8": Tolerance(atol=0.5, rtol=0.5, min_top1=0.9),
}


def tolerance_for(mode: str | None, user: Tolerance | None = None) -> Tolerance:
    """The rule for a weight storage ``mode`` (``None``: float32); ``user`` replaces the float32 rule.

    Raises:
        KeyError: an unknown mode.
    """
    mode = mode or "float32"
    if mode == "float32" and user is not None:
        return user
    return TOLERANCES[mode]
