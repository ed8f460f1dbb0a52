"""Parity between runtimes: compare every output on the same inputs, report all.

One tolerance table; the looser cases are named here, not scattered in tests.

Example:
    >>> report = compare("torch", ref_outputs, "tensorflow", tf_outputs, Tolerance())
    >>> report.ok, report.outputs["logits"].max_abs
    (True, 3.1e-06)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """An output passes when ``|a - b| <= atol + rtol * |b|`` everywhere.

    Args:
        atol: absolute tolerance.
        rtol: relative tolerance.
    """

    atol: float = 1e-4
    rtol: float = 1e-3


# Named tolerances. Default: float32 kernels of two runtimes, same graph.
TOLERANCES = {
    "float32": Tolerance(),
    # float16 weights keep ~3 significant digits; errors add up over a deep net.
    "float16": Tolerance(atol=2e-2, rtol=2e-2),
    # 8-/16-bit affine weight quantization: judged by top-1 agreement, not values.
    "uint16": Tolerance(atol=5e-2, rtol=5e-2),
    "uint8": Tolerance(atol=float("inf"), rtol=float("inf")),
}


@dataclass
class OutputParity:
    """How one output differs between the reference and the candidate runtime."""

    name: str
    max_abs: float
    max_rel: float
    within_tolerance: bool
    top1_agreement: float | None = None
    shape_ok: bool = True
    note: str = ""


@dataclass
class ParityReport:
    """All outputs of one comparison ``reference`` vs ``candidate``."""

    reference: str
    candidate: str
    tolerance: Tolerance
    samples: int
    outputs: dict[str, OutputParity] = field(default_factory=dict)
    divergence: dict | None = None  # first diverging node, when it was located

    @property
    def ok(self) -> bool:
        return all(o.within_tolerance and o.shape_ok for o in self.outputs.values())

    def failures(self) -> list[OutputParity]:
        return [o for o in self.outputs.values() if not (o.within_tolerance and o.shape_ok)]

    def failure_message(self) -> str:
        lines = [
            f"{self.candidate} differs from {self.reference} beyond tolerance "
            f"(atol {self.tolerance.atol:g}, rtol {self.tolerance.rtol:g}) on "
            f"{len(self.failures())} of {len(self.outputs)} output(s), {self.samples} sample(s):"
        ]
        for o in self.failures():
            top1 = f", top-1 agreement {o.top1_agreement:.1%}" if o.top1_agreement is not None else ""
            lines.append(f"  {o.name}: max abs {o.max_abs:.3g}, max rel {o.max_rel:.3g}{top1} {o.note}".rstrip())
        if self.divergence:
            d = self.divergence
            lines.append(f"  divergence starts at node '{d['node']}' ({d['op']}): max abs {d['max_abs']:.3g} "
                         f"(found in {d['probes']} probe conversions)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "tolerance": asdict(self.tolerance),
            "samples": self.samples,
            "ok": self.ok,
            "outputs": {k: asdict(v) for k, v in self.outputs.items()},
            "divergence": self.divergence,
        }


def _spread(arrays: list[np.ndarray]) -> float:
    """How much the output moves across samples (and batch rows): max over elements of max - min."""
    rows = [a.astype(np.float64) if a.ndim > 1 else a.astype(np.float64)[None] for a in arrays]
    rows = [r for r in rows if r.size]
    if len(rows) == 0 or sum(len(r) for r in rows) < 2 or len({r.shape[1:] for r in rows}) != 1:
        return float("inf")
    stacked = np.concatenate(rows)
    return float(np.max(stacked.max(0) - stacked.min(0))) if stacked.size else float("inf")


def _is_classifier_output(a: np.ndarray) -> bool:
    return a.dtype.kind == "f" and a.ndim == 2 and a.shape[-1] > 1


def compare(reference: str, ref: list[dict], candidate: str, cand: list[dict], tolerance: Tolerance) -> ParityReport:
    """Compare the outputs of two runtimes sample by sample, every output.

    Args:
        reference, candidate: runtime names for the report (``"torch"``, ``"tfjs-wasm"``).
        ref, cand: one ``{output name: array}`` per sample, same names and layouts.
        tolerance: the bound each output must meet.

    Returns:
        A ``ParityReport``; it never raises, callers decide what failing means.
    """
    report = ParityReport(reference, candidate, tolerance, samples=len(ref))
    for name in ref[0]:
        abs_err, rel_err, ok, shape_ok, agree, total = 0.0, 0.0, True, True, 0, 0
        note = ""
        if _spread([np.asarray(r[name]) for r in ref]) <= tolerance.atol:
            note = "(reference output barely changes across samples: this check says little)"
        for r, c in zip(ref, cand):
            a, b = np.asarray(r[name]), c.get(name)
            if b is None:
                shape_ok, note = False, f"(missing in {candidate})"
                break
            b = np.asarray(b)
            if a.shape != b.shape:
                shape_ok, note = False, f"(shape {list(b.shape)}, expected {list(a.shape)})"
                break
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            diff = np.abs(a64 - b64)
            if diff.size:
                abs_err = max(abs_err, float(np.nanmax(diff)) if not np.isnan(diff).all() else float("inf"))
                rel_err = max(rel_err, float(np.max(diff / np.maximum(np.abs(a64), 1e-12))))
                ok &= bool(np.all(diff <= tolerance.atol + tolerance.rtol * np.abs(a64)))
                ok &= not bool(np.isnan(b64).any() and not np.isnan(a64).any())
            if _is_classifier_output(a):
                agree += int(np.sum(a.argmax(-1) == b.argmax(-1)))
                total += a.shape[0]
        report.outputs[name] = OutputParity(
            name=name,
            max_abs=abs_err,
            max_rel=rel_err,
            within_tolerance=ok and shape_ok,
            top1_agreement=(agree / total) if total else None,
            shape_ok=shape_ok,
            note=note,
        )
    return report
