"""docs/tfjs-support.md's "What does not convert, and why": generated from the two surveys' JSON."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load_doc_script():
    # bench/ is a folder of scripts, not a package: load the script by path.
    sys.path.insert(0, str(ROOT))
    spec = importlib.util.spec_from_file_location("tfjs_support_doc", ROOT / "bench" / "tfjs_support_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _case(cls, model, stage="done", **kw):
    return {"class": cls, "model": model, "options": "", "stage": stage, "result": kw.pop("result", "ok"),
            "max_abs_tf": 1e-7 if stage == "done" else None, "max_abs_tfjs": 1e-7 if stage == "done" else None, **kw}


SURVEY = {
    "date": "2026-12-03", "machine": {"cpus": 2}, "options": "defaults", "wall_s": 1.0,
    "versions": {"onnx2tf": "1.28.8"},
    "cases": [
        _case("11.4 streaming audio", "rw4_streaming_audio"),
        _case("11.4 streaming audio", "rw4c_unknown_rate", stage="load", error_type="ConversionError", expected_error="ConversionError",
              error="The If node 'If_0' branches on the scalar input 'sr', whose value is not known:\nGive it with --sample",
              result="ConversionError: The If node 'If_0' …"),
        _case("11.6 failure message", "rw6_failure_message", stage="onnx2tf", error_type="ConversionError", expected_error="ConversionError",
              error="onnx2tf could not convert node 'Softmax@0'", result="ConversionError: onnx2tf could not convert node"),
        _case("11.2 Paddle-style", "rw2_broken", stage="parity TF", error_type="ParityError", expected_error=None,
              error="TF output probs differs by 0.5", result="ParityError: TF output probs differs"),
    ],
}

CONFORMANCE = {
    "meta": {"date": "2026-12-03", "command": "python bench/onnx_conformance.py"},
    "cases": [
        {"case": "test_abs", "op": "Abs", "expanded": False, "status": "passed", "stage": None, "message": ""},
        {"case": "test_skip", "op": "Cast", "expanded": False, "status": "skipped", "stage": None, "message": ""},
        {"case": "test_dft", "op": "DFT", "expanded": False, "status": "failed", "stage": "unsupported", "message": "DFT"},
        {"case": "test_div_uint8", "op": "Div", "expanded": False, "status": "failed", "stage": "mismatch", "message": "z: max abs 0.933"},
        {"case": "test_split_1d_uneven_split_opset18", "op": "Split", "expanded": False, "status": "failed", "stage": "convert",
         "message": "onnx2tf could not convert node 'Split_0' (Split, inputs [7]):"},
    ],
}


def test_what_does_not_convert_lists_refusals_failures_and_conformance_failures_by_op():
    doc = _load_doc_script().render(SURVEY, CONFORMANCE)
    section = doc.split("## What does not convert, and why")[1]
    assert ("| 11.4 streaming audio | rw4c_unknown_rate | refused (ConversionError, expected) | The If node 'If_0' branches on the "
            "scalar input 'sr', whose value is not known: Give it with --sample |") in section
    assert "| 11.2 Paddle-style | rw2_broken | fails at parity TF | TF output probs differs by 0.5 |" in section
    assert "rw4_streaming_audio" not in section  # converted: not listed
    assert "1 of 4 runnable backend-node cases pass (25 %); 3 fail" in section
    assert "**No onnx2tf converter** (refused before conversion, naming the op): DFT (1)." in section
    assert "| Div | div_uint8 | z: max abs 0.933 |" in section
    assert "| Split | convert | 1 | onnx2tf could not convert node 'Split_0' (Split, inputs [7]): |" in section


def test_a_class_whose_only_case_is_an_expected_refusal_says_so():
    doc = _load_doc_script().render(SURVEY, CONFORMANCE)
    row = next(line for line in doc.splitlines() if line.startswith("| 11.6 failure message | 0 / 1"))
    assert "refused with a precise error (the expected outcome): rw6_failure_message" in row
    row = next(line for line in doc.splitlines() if line.startswith("| 11.4 streaming audio | 1 / 2"))
    assert "converts; refused with a precise error: rw4c_unknown_rate" in row
