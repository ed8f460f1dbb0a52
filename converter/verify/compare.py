"""Compare two runtimes' outputs on the same samples: every output, every sample, all reported.

Example:
    >>> report = compare("torch", ref_outputs, "tensorflow", tf_outputs, Tolerance())
    >>> report.ok, report.outputs["logits"].max_abs
    (True, 3.1e-06)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from converter.verify.tolerance import Tolerance


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
    """All outputs of one comparison ``reference`` vs ``candidate``.

    ``problems`` lists what is wrong beyond single outputs (sample counts, outputs the
    candidate returned that the reference has not); any problem fails the report.
    """

    reference: str
    candidate: str
    tolerance: Tolerance
    samples: int
    outputs: dict[str, OutputParity] = field(default_factory=dict)
    divergence: dict | None = None  # first diverging node, when it was located
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(o.within_tolerance and o.shape_ok for o in self.outputs.values())

    def failures(self) -> list[OutputParity]:
        return [o for o in self.outputs.values() if not (o.within_tolerance and o.shape_ok)]

    def failure_message(self) -> str:
        t = self.tolerance
        top1 = f", top-1 >= {t.min_top1:.0%}" if t.min_top1 is not None else ""
        lines = [
            f"{self.candidate} differs from {self.reference} beyond tolerance (atol {t.atol:g}, rtol {t.rtol:g}{top1}) on "
            f"{len(self.failures())} of {len(self.outputs)} output(s), {self.samples} sample(s):"
        ]
        lines += [f"  {p}" for p in self.problems]
        for o in self.failures():
            agree = f", top-1 agreement {o.top1_agreement:.1%}" if o.top1_agreement is not None else ""
            lines.append(f"  {o.name}: max abs {o.max_abs:.3g}, max rel {o.max_rel:.3g}{agree} {o.note}".rstrip())
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
            "problems": self.problems,
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


def _compare_output(name: str, ref: list[dict], cand: list[dict], candidate: str, tolerance: Tolerance) -> OutputParity:
    abs_err, rel_err, ok, shape_ok, agree, total, note = 0.0, 0.0, True, True, 0, 0, ""
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
        nan_a, nan_b = np.isnan(a64), np.isnan(b64)
        ok &= bool(np.array_equal(nan_a, nan_b))  # a NaN only one side has is a difference
        diff = np.where(nan_a & nan_b, 0.0, diff)
        if diff.size:
            abs_err = max(abs_err, float(np.nanmax(np.where(np.isnan(diff), np.inf, diff))))
            rel_err = max(rel_err, float(np.nanmax(diff / np.maximum(np.abs(np.nan_to_num(a64)), 1e-12))))
            if a.dtype.kind in "iub":  # indices, token ids, masks: equal or wrong (int64 vs int32 is fine)
                ok &= bool(np.array_equal(a64, b64))
            else:
                ok &= bool(np.all(diff <= tolerance.atol + tolerance.rtol * np.abs(np.nan_to_num(a64))))
        if _is_classifier_output(a):
            agree += int(np.sum(a.argmax(-1) == b.argmax(-1)))
            total += a.shape[0]
    top1 = agree / total if total else None
    if top1 is not None and tolerance.min_top1 is not None and top1 < tolerance.min_top1:
        ok = False
    return OutputParity(name, abs_err, rel_err, ok and shape_ok, top1, shape_ok, note)


def compare(reference: str, ref: list[dict], candidate: str, cand: list[dict], tolerance: Tolerance) -> ParityReport:
    """Compare the outputs of two runtimes sample by sample, every output.

    Args:
        reference, candidate: runtime names for the report (``"torch"``, ``"tfjs-wasm"``).
        ref, cand: one ``{output name: array}`` per sample, same names and layouts.
        tolerance: the rule each float output must meet; integer and boolean outputs must be equal.

    Returns:
        A ``ParityReport``; it never raises, callers decide what failing means. A candidate
        with another number of samples, or with outputs the reference lacks, fails it.
    """
    report = ParityReport(reference, candidate, tolerance, samples=len(ref))
    if len(cand) != len(ref):
        report.problems.append(f"{candidate} returned {len(cand)} sample(s), {reference} {len(ref)}")
    if not ref:
        report.problems.append("no samples were compared")
        return report
    extra = sorted({k for c in cand for k in c} - set(ref[0]))
    if extra:
        report.problems.append(f"{candidate} returned outputs {reference} has not: {extra}")
    for name in ref[0]:
        report.outputs[name] = _compare_output(name, ref, cand, candidate, tolerance)
    return report
