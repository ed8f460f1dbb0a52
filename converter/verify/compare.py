"""Compare two runtimes' outputs on the same samples: every output, every sample, all reported.

Example:
    >>> report = compare("torch", ref_outputs, "tensorflow", tf_outputs, Tolerance())
    >>> report.ok, report.outputs["logits"].max_abs
    (True, 3.1e-06)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from converter.verify.tolerance import Tolerance, decisive_margin


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
    max_prob_change: float | None = None  # under a probability rule: the largest class-probability change
    top1_counted: int | None = None  # rows top1_agreement counts (under a probability rule: the decisive ones)


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
        top1 += f", probability change <= {t.max_prob_change:g}" if t.max_prob_change is not None else ""
        lines = [
            f"{self.candidate} differs from {self.reference} beyond tolerance (atol {t.atol:g}, rtol {t.rtol:g}{top1}) on "
            f"{len(self.failures())} of {len(self.outputs)} output(s), {self.samples} sample(s):"
        ]
        lines += [f"  {p}" for p in self.problems]
        for o in self.failures():
            agree = f", top-1 agreement {o.top1_agreement:.1%}" if o.top1_agreement is not None else ""
            agree += f" on {o.top1_counted} row(s)" if o.top1_counted is not None and o.top1_agreement is not None else ""
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


def _pairs(name: str, ref: list[dict], cand: list[dict], candidate: str) -> tuple[list, str]:
    """(reference, candidate) arrays of one output, sample by sample; a note when one is missing or misshapen."""
    pairs = []
    for r, c in zip(ref, cand):
        a, b = np.asarray(r[name]), c.get(name)
        if b is None:
            return pairs, f"(missing in {candidate})"
        b = np.asarray(b)
        if a.shape != b.shape:
            return pairs, f"(shape {list(b.shape)}, expected {list(a.shape)})"
        pairs.append((a, b))
    return pairs, ""


def _elementwise(name: str, pairs: list, tolerance: Tolerance, scale: float | None, note: str) -> OutputParity:
    """``|a - b| <= atol + rtol * |a|`` element by element (``scale``: one magnitude for all elements instead)."""
    abs_err, rel_err, ok, agree, total = 0.0, 0.0, True, 0, 0
    for a, b in pairs:
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        diff = np.abs(a64 - b64)
        nan_a, nan_b = np.isnan(a64), np.isnan(b64)
        ok &= bool(np.array_equal(nan_a, nan_b))  # a NaN only one side has is a difference
        diff = np.where((nan_a & nan_b) | (a64 == b64), 0.0, diff)  # equal infinities (masks, casts) agree
        if diff.size:
            magnitude = np.abs(np.nan_to_num(a64)) if scale is None else scale
            abs_err = max(abs_err, float(np.nanmax(np.where(np.isnan(diff), np.inf, diff))))
            rel_err = max(rel_err, float(np.nanmax(diff / np.maximum(magnitude, 1e-12))))
            if a.dtype.kind in "iub":  # indices, token ids, masks: equal or wrong (int64 vs int32 is fine)
                ok &= bool(np.array_equal(a64, b64))
            else:
                ok &= bool(np.all(diff <= tolerance.atol + tolerance.rtol * magnitude))
        if _is_classifier_output(a):
            agree += int(np.sum(a.argmax(-1) == b.argmax(-1)))
            total += a.shape[0]
    top1 = agree / total if total else None
    if top1 is not None and tolerance.min_top1 is not None and top1 < tolerance.min_top1:
        ok = False
    return OutputParity(name, abs_err, rel_err, ok, top1, True, note, top1_counted=total or None)


def softmax(z: np.ndarray) -> np.ndarray:
    """Class probabilities of logits, along the last axis."""
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _probabilities(name: str, pairs: list, meaning: str, tolerance: Tolerance, note: str) -> OutputParity:
    """Judge a classifier output by what quantized weights promise: bounded probability change, top-1 where decisive."""
    raw = _elementwise(name, pairs, Tolerance(), None, "")  # its max abs / rel, for the report only
    a = np.concatenate([x.astype(np.float64).reshape(-1, x.shape[-1]) for x, _ in pairs])
    b = np.concatenate([y.astype(np.float64).reshape(-1, y.shape[-1]) for _, y in pairs])
    if meaning == "logits":
        a, b = softmax(a), softmax(b)
    change = float(np.max(np.abs(a - b))) if np.isfinite(b).all() and np.isfinite(a).all() else float("inf")
    top2 = np.sort(a, -1)[:, -2:]
    decisive = top2[:, 1] - top2[:, 0] > decisive_margin(tolerance)
    counted = int(decisive.sum())
    top1 = float(np.mean(a.argmax(-1)[decisive] == b.argmax(-1)[decisive])) if counted else None
    ok = change <= tolerance.max_prob_change and (top1 is None or tolerance.min_top1 is None or top1 >= tolerance.min_top1)
    kind = "softmax of the logits" if meaning == "logits" else "probabilities"
    judged = (f"top-1 judged on the {counted} of {len(a)} row(s) whose top-1/top-2 margin exceeds "
              f"{decisive_margin(tolerance):g}")
    note = f"({kind}: max change {change:.3g}, allowed {tolerance.max_prob_change:g}; {judged}) {note}".rstrip()
    return OutputParity(name, raw.max_abs, raw.max_rel, ok, top1, True, note, max_prob_change=change, top1_counted=counted)


def _compare_output(name: str, ref: list[dict], cand: list[dict], candidate: str, tolerance: Tolerance,
                    meaning: str | None = None) -> OutputParity:
    pairs, missing = _pairs(name, ref, cand, candidate)
    if missing:
        return OutputParity(name, 0.0, 0.0, False, None, False, missing)
    note = ""
    if _spread([np.asarray(r[name]) for r in ref]) <= tolerance.atol:
        note = "(reference output barely changes across samples: this check says little)"
    if tolerance.max_prob_change is None:
        return _elementwise(name, pairs, tolerance, None, note)
    if meaning in ("probabilities", "logits") and pairs and pairs[0][0].dtype.kind == "f" and pairs[0][0].shape[-1] > 1:
        return _probabilities(name, pairs, meaning, tolerance, note)
    # Other outputs under a probability rule: relative to the output's own largest magnitude.
    scale = max((float(np.nanmax(np.abs(a.astype(np.float64)))) for a, _ in pairs if a.size), default=0.0)
    return _elementwise(name, pairs, tolerance, scale, note)


def compare(reference: str, ref: list[dict], candidate: str, cand: list[dict], tolerance: Tolerance,
            meanings: dict[str, str | None] | None = None) -> ParityReport:
    """Compare the outputs of two runtimes sample by sample, every output.

    Args:
        reference, candidate: runtime names for the report (``"torch"``, ``"tfjs-wasm"``).
        ref, cand: one ``{output name: array}`` per sample, same names and layouts.
        tolerance: the rule each float output must meet; integer and boolean outputs must be equal.
        meanings: ``{output name: TensorSpec.meaning}``; a probability rule (quantized
            weights) judges ``probabilities`` and ``logits`` outputs as class probabilities.

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
        report.outputs[name] = _compare_output(name, ref, cand, candidate, tolerance, (meanings or {}).get(name))
    return report
