"""The comparator every parity check uses (``converter.verify.compare``) and its tolerance table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from converter.verify.compare import compare
from converter.verify.tolerance import TOLERANCES, Tolerance

RULE = TOLERANCES["float32"]
REF = [{"p": np.array([[0.1, 0.9]], np.float32)}, {"p": np.array([[0.8, 0.2]], np.float32)}]


def test_identical_outputs_pass_and_a_small_error_fails():
    assert compare("a", REF, "b", REF, RULE).ok
    off = [{"p": r["p"] + 1e-3} for r in REF]
    report = compare("a", REF, "b", off, RULE)
    assert not report.ok and report.failures()[0].name == "p"
    assert "b differs from a" in report.failure_message()


def test_a_candidate_with_fewer_samples_or_extra_outputs_fails():
    assert not compare("a", REF, "b", REF[:1], RULE).ok
    extra = [{**r, "q": np.zeros(1)} for r in REF]
    report = compare("a", REF, "b", extra, RULE)
    assert not report.ok and "q" in report.problems[0]


def test_a_nan_on_one_side_only_fails_and_on_both_sides_passes():
    nan = [{"p": np.array([[np.nan, 0.9]], np.float32)}, REF[1]]
    assert compare("a", nan, "b", nan, RULE).ok
    assert not compare("a", REF, "b", nan, RULE).ok
    assert not compare("a", nan, "b", REF, RULE).ok


def test_equal_infinities_agree_and_an_infinity_on_one_side_fails():
    inf = [{"p": np.array([[-np.inf, 0.9]], np.float32)}, REF[1]]
    assert compare("a", inf, "b", inf, RULE).ok
    assert not compare("a", inf, "b", [{"p": np.array([[np.inf, 0.9]], np.float32)}, REF[1]], RULE).ok
    assert not compare("a", REF, "b", inf, RULE).ok


def test_integer_outputs_must_be_equal_whatever_the_float_tolerance():
    ids = [{"i": np.array([3, 7], np.int64)}]
    loose = Tolerance(atol=10.0, rtol=1.0)
    assert compare("a", ids, "b", [{"i": np.array([3, 7], np.int32)}], loose).ok
    assert not compare("a", ids, "b", [{"i": np.array([3, 8], np.int32)}], loose).ok


def test_a_top1_rule_fails_when_the_argmax_moves():
    swapped = [{"p": r["p"][:, ::-1].copy()} for r in REF]
    rule = Tolerance(atol=1.0, rtol=0.0, min_top1=0.9)
    assert not compare("a", REF, "b", swapped, rule).ok


@pytest.mark.parametrize("bad", [math.inf, -1.0, math.nan])
def test_no_tolerance_may_be_infinite_negative_or_nan(bad):
    with pytest.raises(ValueError, match="finite"):
        Tolerance(atol=bad)
    assert all(math.isfinite(v) for t in TOLERANCES.values() for v in (t.atol, t.rtol))
