"""Survey of issue 5's and issue 11's failure classes: convert one small model per class, say where it breaks.

    .venv/bin/python bench/failure_classes.py [--only grouped,lstm] [--timeout 400] [--json PATH]

Each case of ``fixtures.failure_classes.CASES`` (issue 5) and ``fixtures.real_world_onnx.CASES``
(issue 11, the builders its tests use) goes through the project's real
path, ``converter.convert`` with default options (parity in TensorFlow and in TF.js
wasm, tolerance atol 1e-4 / rtol 1e-3), into a temporary folder. What happened is
read from the conversion's report — ``result.report``, or ``err.report`` when it
raised (the stages reached and the one that failed, every ``ParityReport``, the TF
and TF.js op histograms, the TF.js passes) — plus, for a finished conversion, the
conv/matmul nodes of its ``model.json``. When TF.js wasm disagrees, the case is
converted again checked on the TF.js ``cpu`` backend (diagnosis only).

Typed errors (``converter.errors.*``, ``NodeRuntimeError``) are the expected
outcomes; anything else is recorded as "unexpected". A case whose right outcome is a
precise refusal names the error type it expects (``expected_error``). Prints a Markdown table on
stdout and writes ``bench/results/failure_classes.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import re
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
DEFAULT_JSON = REPO / "bench" / "results" / "failure_classes.json"

STAGES = {  # pipeline timer stage -> the name in the table
    "load_source": "load",
    "to_saved_model": "onnx2tf",
    "op_histogram": "onnx2tf",
    "parity_tensorflow": "parity TF",
    "locate_divergence": "parity TF",
    "export_tfjs": "export TF.js",
    "export_tfjs_layers": "export TF.js",
    "parity_tfjs": "parity TF.js",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class CaseTimeout(Exception):
    pass


# ----------------------------------------------------------------------------- one case


_COMPUTE = {"Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative", "MatMul", "_FusedMatMul", "BatchMatMul", "BatchMatMulV2"}


def tfjs_compute_nodes(model_json: Path) -> list[dict]:
    """Conv/matmul nodes of a TF.js graph model: op, weight shapes, fused ops."""
    from converter.export.tfjs_passes import _strings

    model = json.loads(model_json.read_text())
    shapes = {w["name"]: w["shape"] for g in model["weightsManifest"] for w in g["weights"]}
    nodes = []
    for n in model["modelTopology"].get("node", []):
        if n["op"] not in _COMPUTE:
            continue
        entry = {"name": n["name"], "op": n["op"]}
        weights = [shapes.get(i.split(":")[0]) for i in n.get("input", [])[1:]]
        if weights and weights[0] is not None:
            entry["weight_shape"] = weights[0]
        fused = _strings(n.get("attr", {}).get("fused_ops", {}))
        if fused:
            entry["fused_ops"] = fused
            if len(weights) > 1 and weights[1] is not None:
                entry["bias_shape"] = weights[1]
        nodes.append(entry)
    return nodes


# ----------------------------------------------------------------------------- one case


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _first_line(e: BaseException) -> str:
    """The message's first line (and the next one when the first ends with ':')."""
    lines = (_plain(str(e)).strip() or type(e).__name__).splitlines()
    text = lines[0] + (" " + lines[1].strip() if lines[0].endswith(":") and len(lines) > 1 else "")
    return text[:300]


def _max_abs(parity: dict | None):
    if not parity or not parity.get("outputs"):
        return None
    return max(o["max_abs"] for o in parity["outputs"].values())


def _failing_outputs(parity: dict | None) -> list[str]:
    """Names of the outputs over tolerance; ``name (missing)`` where the runtime did not return it."""
    if not parity:
        return []
    return [k + (" (missing)" if "missing" in o.get("note", "") else "")
            for k, o in parity["outputs"].items() if not (o["within_tolerance"] and o["shape_ok"])]


def _options_label(opts: dict) -> str:
    parts = []
    if "input_shapes" in opts:
        parts += [f"--input-shape {k}:{','.join(map(str, v))}" for k, v in opts["input_shapes"].items()]
    if "batch" in opts:
        parts.append(f"--batch {opts['batch']}")
    parts += [f"--disable-pass {name}" for name in opts.get("disabled_passes", ())]
    return " ".join(parts)


def run_case(cls: str, builder, opts: dict, output_names, work: Path, timeout: int, expected_error: str | None = None) -> dict:
    """Build and convert one case; return what happened, read from the conversion's report."""
    import converter
    from converter.errors import ParityError, TransferJSError

    entry = {"class": cls, "model": builder.__name__, "options": _options_label(opts), "expected_error": expected_error}
    t0 = time.perf_counter()
    folder = work / builder.__name__
    src, example, what = builder(folder / "src")
    entry["description"] = what
    options = converter.ConvertOptions(**opts)
    kwargs = {"example_inputs": example, "output_names": output_names} if example is not None and not isinstance(src, (str, Path)) else {}
    out = folder / f"out{len(list(folder.glob('out*')))}"
    error, report = _convert_with_timeout(lambda: converter.convert(src, out, options, **kwargs), timeout)
    entry["seconds"] = round(time.perf_counter() - t0, 1)
    if isinstance(error, Exception) and not isinstance(error, (TransferJSError, CaseTimeout)):
        entry["traceback"] = "".join(traceback.format_exception(error))[-3000:]
    report = report.to_dict() if report is not None else {}
    entry["stages_entered"] = report.get("stages", []) + ([report["failed_stage"]] if report.get("failed_stage") else [])
    if error is None:
        entry["stage"], entry["result"] = "done", "ok"
    else:
        typed = isinstance(error, TransferJSError)
        entry["error_type"] = type(error).__name__
        entry["error"] = _plain(str(error))[:4000]
        first = re.sub(r" on '[^']*'(?=:)", "", _first_line(error))  # the bundle's temporary path
        entry["result"] = f"{'' if typed else 'unexpected '}{type(error).__name__}: {first}"
        if report.get("failed_stage"):
            entry["stage"] = STAGES.get(report["failed_stage"], report["failed_stage"])
        elif isinstance(error, ParityError):  # raised after all stages ran
            entry["stage"] = "parity TF" if any(r.candidate == "tensorflow" for r in error.reports) else "parity TF.js"
        else:
            entry["stage"] = "?"
        if entry["stage"] == "onnx2tf" and report.get("source", {}).get("format") == "keras":
            entry["stage"] = "SavedModel (Keras)"
    parity = report.get("parity", {})
    entry["parity"] = parity
    entry["max_abs_tf"] = _max_abs(parity.get("tensorflow"))
    entry["max_abs_tfjs"] = _max_abs(parity.get("tfjs"))
    entry["failing_outputs"] = {k: _failing_outputs(v) for k, v in parity.items() if _failing_outputs(v)}
    entry["divergence"] = (parity.get("tensorflow") or {}).get("divergence")
    entry["tfjs_cpu"] = _cpu_diagnosis(src, out, options, kwargs, timeout) if "tfjs" in entry["failing_outputs"] else None
    entry["onnx_passes"] = report.get("source", {}).get("onnx_passes")
    entry["tf_ops"] = report.get("op_histogram")
    tfjs = report.get("tfjs") or {}
    entry["tfjs_ops"], entry["tfjs_passes"] = tfjs.get("op_histogram"), tfjs.get("passes")
    model_json = out / "tfjs" / "model.json"  # only a finished conversion leaves its bundle
    entry["tfjs_compute_nodes"] = tfjs_compute_nodes(model_json) if model_json.is_file() else []
    signature = json.loads(model_json.read_text()).get("signature", {}) if model_json.is_file() else {}
    entry["tfjs_signature_outputs"] = {k: v.get("name") for k, v in signature.get("outputs", {}).items()}
    entry["converted_inputs"] = [{k: t[k] for k in ("name", "shape", "layout", "source_layout")}
                                 for t in (report.get("model") or {}).get("inputs", [])]
    return entry


def _convert_with_timeout(call, timeout: int):
    """``(error or None, ConversionReport or None)`` of ``call()``, stopped after ``timeout`` seconds."""

    def on_alarm(signum, frame):
        raise CaseTimeout(f"no result after {timeout} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(timeout)
    try:
        return None, call().report
    except Exception as e:  # typed errors are outcomes; others are bugs the table must show
        return e, getattr(e, "report", None)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _cpu_diagnosis(src, out: Path, options, kwargs: dict, timeout: int) -> dict:
    """Diagnosis only: the same conversion checked on the TF.js cpu backend instead of wasm."""
    import converter

    error, report = _convert_with_timeout(
        lambda: converter.convert(src, out.with_name(out.name + "-cpu"), dataclasses.replace(options, backend="cpu"), **kwargs), timeout)
    parity = (report.to_dict() if report else {}).get("parity", {}).get("tfjs")
    if parity is None:
        return {"ok": False, "error": _first_line(error) if error else "no TF.js parity"}
    return {"ok": parity["ok"], "max_abs": _max_abs(parity), "report": parity}


# ----------------------------------------------------------------------------- table


def _fmt(x) -> str:
    return "" if x is None else f"{x:.3g}"


def notes(e: dict) -> str:
    parts = []
    for where, outs in e.get("failing_outputs", {}).items():
        parts.append(f"{'TF' if where == 'tensorflow' else 'TF.js'} fails: {', '.join(outs)}")
    if e.get("divergence"):
        d = e["divergence"]
        parts.append(f"diverges at {d['node']} ({d['op']})")
    elif "tensorflow" in e.get("failing_outputs", {}):
        parts.append("divergence not located")
    if e.get("tfjs_passes"):
        parts.append("passes " + ", ".join(f"{k}={v}" for k, v in e["tfjs_passes"].items()))
    if e.get("tfjs_cpu"):
        c = e["tfjs_cpu"]
        parts.append("cpu backend: " + ("ok" if c["ok"] else c.get("error") or f"max abs {_fmt(c.get('max_abs'))}"))
    return "; ".join(parts)


def markdown(entries: list[dict]) -> str:
    lines = [
        "| class | model | stage reached | result | max abs TF | max abs TF.js | notes |",
        "|---|---|---|---|---:|---:|---|",
    ]
    for e in entries:
        model = e["model"] + (f" ({e['options']})" if e["options"] else "")
        result = e["result"].replace("|", "\\|")
        lines.append(f"| {e['class']} | {model} | {e['stage']} | {result} | {_fmt(e['max_abs_tf'])} | "
                     f"{_fmt(e['max_abs_tfjs'])} | {notes(e).replace('|', '/')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated substrings of builder names or classes")
    parser.add_argument("--timeout", type=int, default=400, help="seconds per case")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)

    from transferjs.console import configure

    configure(verbose=False)  # framework start-up noise to the native log, as the CLI does
    from converter.pipeline import library_versions
    from fixtures import failure_classes, real_world_onnx

    CASES = [(*c, None) for c in failure_classes.CASES] + list(real_world_onnx.CASES)
    cases = CASES
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        cases = [c for c in CASES if any(k in c[1].__name__ or k in c[0] for k in keys)]
    entries = []
    started = time.time()
    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()},
        "versions": library_versions(),
        "options": "converter.ConvertOptions() defaults (+ the case's own fields); tolerance atol 1e-4, rtol 1e-3; TF.js wasm",
    }
    with tempfile.TemporaryDirectory(prefix="transferjs-failure-classes-") as tmp:
        for i, (cls, builder, opts, outs, expected) in enumerate(cases, 1):
            log(f"[{i}/{len(cases)}] {cls}: {builder.__name__} {_options_label(opts)}")
            entry = run_case(cls, builder, opts, outs, Path(tmp), args.timeout, expected)
            log(f"    -> {entry['stage']}: {entry['result'][:160]} ({entry['seconds']} s)")
            entries.append(entry)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({**meta, "wall_s": round(time.time() - started, 1), "cases": entries}, indent=1, default=str) + "\n")
    print(markdown(entries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
