"""The one tolerance table: what "the same" means for each way a bundle stores its weights.

A rule judges values element-wise (``atol``/``rtol``) and, for classifier outputs,
may also require top-1 agreement. A rule for 8-bit weights (``max_prob_change`` set)
judges what that mode promises instead: the class probabilities (softmax of logits)
move by at most ``max_prob_change``, and the top-1 label stays on every sample whose
reference is decisive; other outputs are judged relative to their own scale. Every
bound is finite: a check that cannot fail checks nothing. Looser rules are named
here, never scattered in tests.

Example:
    >>> TOLERANCES["float16"].atol
    0.02
    >>> tolerance_for("float32", Tolerance(atol=1e-3))   # the user's own bound for float32
    Tolerance(atol=0.001, rtol=0.001, min_top1=None, max_prob_change=None)
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
            fraction of rows whose argmax must agree; ``None``: not checked. Under a
            probability rule only decisive rows count (see ``decisive_margin``).
        max_prob_change: a probability rule: outputs whose meaning is ``probabilities``
            or ``logits`` (compared after a softmax) pass when no class probability moves
            by more than this; every other output passes when
            ``|a - b| <= atol + rtol * max|a|`` (``a`` over all samples of that output),
            so an exactly-zero reference value is judged like its neighbours.

    Raises:
        ValueError: a bound that is negative, infinite or NaN.
    """

    atol: float = 1e-4
    rtol: float = 1e-3
    min_top1: float | None = None
    max_prob_change: float | None = None

    def __post_init__(self):
        optional = {k: getattr(self, k) for k in ("min_top1", "max_prob_change") if getattr(self, k) is not None}
        bounds = {"atol": self.atol, "rtol": self.rtol, **optional}
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
    # 8-bit weights promise the class, not the digits: probabilities (softmax of logits)
    # move by at most 0.15, and the top-1 label stays on every decisive sample (top-1/top-2
    # margin above 2 x 0.15, where such a change cannot swap them). Features and values:
    # within 10 % of the output's own largest magnitude. Measured (BENCHMARKS.md): per-channel
    # uint8 moves EfficientNet-Lite0's probabilities by at most 0.11 on 305 real images; a
    # kernel that lost its scale moves them by ~1.
    "uint8": Tolerance(atol=0.0, rtol=0.1, min_top1=1.0, max_prob_change=0.15),
    # tensorflowjs' one range per tensor (fragile tensors float16) is held to the same promise
    # (it moves them by up to 0.20 there).
    "uint8-per-tensor": Tolerance(atol=0.0, rtol=0.1, min_top1=1.0, max_prob_change=0.15),
}


def decisive_margin(tolerance: Tolerance) -> float:
    """The top-1/top-2 probability margin above which a row's label must survive ``tolerance``.

    When no probability moves by more than ``d``, a margin above ``2 d`` cannot close.
    """
    return 2 * (tolerance.max_prob_change or 0.0)


def tolerance_for(mode: str | None, user: Tolerance | None = None) -> Tolerance:
    """The rule for a weight storage ``mode`` (``None``: float32); ``user`` replaces the float32 rule.

    Raises:
        KeyError: an unknown mode.
    """
    mode = mode or "float32"
    if mode == "float32" and user is not None:
        return user
    return TOLERANCES[mode]
