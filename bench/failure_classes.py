"""Survey of issue 5's failure classes: convert one small model per class, say where it breaks.

    .venv/bin/python bench/failure_classes.py [--only grouped,lstm] [--probes] [--timeout 400] [--json PATH]

Each case of ``fixtures.failure_classes.CASES`` goes through the project's real
path, ``converter.pipeline.convert`` with default options (parity in TensorFlow
and in TF.js wasm, tolerance atol 1e-4 / rtol 1e-3), into a temporary folder.
Only read-only hooks are added (no behaviour changes), to record what the report
would hold when a conversion fails part-way:

- which stage was running when an error was raised (``pipeline._Timer.stage``);
- every ``ParityReport`` (TF and TF.js), also for outputs that passed;
- the TF and TF.js op histograms, the TF.js passes applied, and the conv/matmul
  nodes of ``model.json`` (op, filter shape, fused ops, bias shape);
- when TF.js wasm fails or disagrees, the same bundle is also run on the TF.js
  ``cpu`` backend (diagnosis only; not part of the pipeline's verdict).

Typed errors (``converter.errors.*``, ``NodeRuntimeError``) are the expected
outcomes; anything else is recorded as "unexpected". Prints a Markdown table on
stdout and writes ``bench/results/failure_classes.json``.

``--probes`` also runs ``PROBES``, one child process each: the same cases with a
fix candidate that needs no code change (an onnx2tf flag added to the request the
pipeline writes, a ``ConvertOptions`` field, or ``TF_ENABLE_ONEDNN_OPTS=0``), and
prints them as a second table (JSON key ``probes``).
"""

from __future__ import annotations

import argparse
import contextlib
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


# ----------------------------------------------------------------------------- hooks


class Recorder:
    """What the hooks saw during the current case."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.stages: list[str] = []
        self.failed_in: str | None = None
        self.source = None
        self.parity: dict[str, dict] = {}
        self.cpu: dict | None = None
        self.tf_ops: dict | None = None
        self.tfjs_ops: dict | None = None
        self.tfjs_nodes: list[dict] = []
        self.passes: dict | None = None
        self.tfjs_signature: dict | None = None
        self.converted_inputs: list | None = None


REC = Recorder()


def _record_result(module, name: str, field: str) -> None:
    """Wrap ``module.name`` so that each call's result is also stored as ``REC.<field>``."""
    original = getattr(module, name)

    def recorded(*args, **kwargs):
        result = original(*args, **kwargs)
        setattr(REC, field, result)
        return result

    setattr(module, name, recorded)


def install_hooks() -> None:
    from converter import graph_ops, parity_run, pipeline
    from converter.export import tfjs_passes

    orig_stage = pipeline._Timer.stage

    @contextlib.contextmanager
    def stage(self, name):
        REC.stages.append(name)
        try:
            with orig_stage(self, name):
                yield
        except BaseException:
            REC.failed_in = REC.failed_in or name
            raise

    pipeline._Timer.stage = stage

    orig_describe = pipeline._describe

    def describe(*args, **kwargs):
        model = orig_describe(*args, **kwargs)
        REC.converted_inputs = [{"name": t.name, "shape": t.shape, "layout": t.layout, "source_layout": t.source_layout}
                                for t in model.inputs]
        return model

    pipeline._describe = describe

    _record_result(pipeline, "load_source", "source")

    orig_tf = parity_run.source_vs_tensorflow

    def source_vs_tensorflow(*args, **kwargs):
        samples, ref, report = orig_tf(*args, **kwargs)
        REC.parity["tensorflow"] = report.to_dict()
        return samples, ref, report

    parity_run.source_vs_tensorflow = source_vs_tensorflow

    orig_js = parity_run.source_vs_tfjs

    def source_vs_tfjs(source, model, bundle_dir, samples, ref, options):
        try:
            report = orig_js(source, model, bundle_dir, samples, ref, options)
        except Exception:
            _try_cpu(orig_js, source, model, bundle_dir, samples, ref, options)
            raise
        REC.parity["tfjs"] = report.to_dict()
        if not report.ok:
            _try_cpu(orig_js, source, model, bundle_dir, samples, ref, options)
        return report

    parity_run.source_vs_tfjs = source_vs_tfjs

    _record_result(graph_ops, "op_histogram", "tf_ops")

    orig_js_hist = graph_ops.tfjs_op_histogram

    def tfjs_op_histogram(bundle_dir):
        REC.tfjs_ops = orig_js_hist(bundle_dir)
        REC.tfjs_nodes = tfjs_compute_nodes(Path(bundle_dir) / "model.json")
        signature = json.loads((Path(bundle_dir) / "model.json").read_text()).get("signature", {})
        REC.tfjs_signature = {k: v.get("name") for k, v in signature.get("outputs", {}).items()}
        return REC.tfjs_ops

    graph_ops.tfjs_op_histogram = tfjs_op_histogram

    orig_passes = tfjs_passes.apply_passes

    def apply_passes(model_json):
        REC.passes = orig_passes(model_json)
        return REC.passes

    tfjs_passes.apply_passes = apply_passes


def _try_cpu(orig_js, source, model, bundle_dir, samples, ref, options) -> None:
    """Diagnosis only: the same bundle and samples on the TF.js cpu backend."""
    if options.backend == "cpu":
        return
    try:
        report = orig_js(source, model, bundle_dir, samples, ref, dataclasses.replace(options, backend="cpu"))
        REC.cpu = {"ok": report.ok, "max_abs": _max_abs(report.to_dict()), "report": report.to_dict()}
    except Exception as e:
        REC.cpu = {"ok": False, "error": f"{type(e).__name__}: " + re.sub(r" on '[^']*'(?=:)", "", _first_line(e))}


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


def _onnx_ops(source) -> dict | None:
    model = getattr(source, "converted_onnx", None) or getattr(source, "model", None)
    if model is None or not hasattr(model, "graph"):
        return None
    from collections import Counter

    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def _options_label(opts: dict) -> str:
    parts = []
    if "input_shapes" in opts:
        parts += [f"--input-shape {k}:{','.join(map(str, v))}" for k, v in opts["input_shapes"].items()]
    if "batch" in opts:
        parts.append(f"--batch {opts['batch']}")
    return " ".join(parts)


# Not the pipeline's defaults: what each fix candidate that needs no code change does
# (an onnx2tf flag, a ConvertOptions field, or TF_ENABLE_ONEDNN_OPTS=0 for the whole
# process, which also covers the in-process tensorflowjs conversion). Each runs in its
# own child process. (builder name, ConvertOptions fields, onnx2tf kwargs, oneDNN off)
PROBES = [
    ("class1_grouped_conv", {}, {"disable_group_convolution": True}, False),
    ("class3_hardswish", {}, {}, True),
    ("class3b_gelu_silu", {}, {}, True),
    ("class6_transformer_mha", {}, {}, True),
    ("class6b_transformer_hand", {}, {"disable_strict_mode": True}, True),
    ("class7_yolo_dist2bbox", {"batch": "static"}, {}, False),
    ("class9_lstm_state", {"batch": "static"}, {"keep_shape_absolutely_input_names": ["x", "h0", "c0"], "enable_rnn_unroll": True}, False),
    ("class9b_gru_state", {"batch": "static"}, {"keep_shape_absolutely_input_names": ["x", "h0"], "enable_rnn_unroll": True}, False),
]


def inject_onnx2tf_kwargs(extra: dict) -> None:
    """Add ``extra`` to every onnx2tf request the pipeline writes (probe child processes only)."""
    import subprocess

    orig_run = subprocess.run

    def run(cmd, *args, **kwargs):
        if isinstance(cmd, list) and "converter.sources.onnx2tf_runner" in cmd:
            req = Path(cmd[-2])
            req.write_text(json.dumps({**json.loads(req.read_text()), **extra}))
        return orig_run(cmd, *args, **kwargs)

    subprocess.run = run


def _probe_label(opts: dict, kwargs: dict, onednn_off: bool) -> str:
    parts = [_options_label(opts)] if opts else []
    parts += [f"onnx2tf {k}={json.dumps(v)}" for k, v in kwargs.items()]
    parts += ["TF_ENABLE_ONEDNN_OPTS=0"] if onednn_off else []
    return ", ".join(parts)


def run_probes(timeout: int) -> list[dict]:
    """Each probe in a child process of this script (``--probe-index``); return their entries."""
    import os
    import subprocess

    entries = []
    for i, (name, opts, kwargs, onednn_off) in enumerate(PROBES):
        log(f"[probe {i + 1}/{len(PROBES)}] {name}: {_probe_label(opts, kwargs, onednn_off)}")
        env = dict(os.environ, **({"TF_ENABLE_ONEDNN_OPTS": "0"} if onednn_off else {}))
        with tempfile.TemporaryDirectory(prefix="transferjs-probe-") as tmp:
            res = Path(tmp) / "probe.json"
            proc = subprocess.run([sys.executable, __file__, "--probe-index", str(i), "--json", str(res), "--timeout", str(timeout)],
                                  env=env, capture_output=True, text=True, timeout=timeout + 120)
            if res.exists():
                entry = json.loads(res.read_text())
            else:
                entry = {"class": "", "model": name, "options": _probe_label(opts, kwargs, onednn_off), "stage": "?",
                         "result": f"probe process failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}",
                         "max_abs_tf": None, "max_abs_tfjs": None}
        log(f"    -> {entry['stage']}: {entry['result'][:160]}")
        entries.append(entry)
    return entries


def run_case(cls: str, builder, opts: dict, output_names, work: Path, timeout: int) -> dict:
    """Build and convert one case; return what happened."""
    import converter
    from converter.errors import ParityError, TransferJSError

    REC.reset()
    entry = {"class": cls, "model": builder.__name__, "options": _options_label(opts)}
    t0 = time.perf_counter()
    folder = work / builder.__name__
    src, example, what = builder(folder / "src")
    entry["description"] = what
    options = converter.ConvertOptions(**opts)
    kwargs = {}
    if example is not None and not isinstance(src, (str, Path)):
        kwargs = {"example_inputs": example, "output_names": output_names}
    out = folder / f"out{len(list(folder.glob('out*')))}"

    def on_alarm(signum, frame):
        raise CaseTimeout(f"no result after {timeout} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(timeout)
    error = None
    try:
        result = converter.convert(src, out, options, **kwargs)
        entry["report_passes"] = result.report.get("tfjs", {}).get("passes")
    except TransferJSError as e:
        error = e
    except CaseTimeout as e:
        error = e
    except Exception as e:  # untyped: a bug of ours (or a framework's) the table must show
        error = e
        entry["traceback"] = traceback.format_exc()[-3000:]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    entry["seconds"] = round(time.perf_counter() - t0, 1)
    entry["stages_entered"] = list(dict.fromkeys(REC.stages))
    if error is None:
        entry["stage"] = "done"
        entry["result"] = "ok"
    else:
        typed = isinstance(error, TransferJSError)
        entry["error_type"] = type(error).__name__
        entry["error"] = _plain(str(error))[:4000]
        first = re.sub(r" on '[^']*'(?=:)", "", _first_line(error))  # the bundle's temporary path
        entry["result"] = f"{'' if typed else 'unexpected '}{type(error).__name__}: {first}"
        if REC.failed_in is not None:
            entry["stage"] = STAGES.get(REC.failed_in, REC.failed_in)
        elif isinstance(error, ParityError):  # raised after all stages ran
            entry["stage"] = "parity TF" if any(r.candidate == "tensorflow" for r in error.reports) else "parity TF.js"
        else:
            entry["stage"] = "?"
        if entry["stage"] == "onnx2tf" and getattr(REC.source, "format", None) == "keras":
            entry["stage"] = "SavedModel (Keras)"
    entry["parity"] = REC.parity
    entry["max_abs_tf"] = _max_abs(REC.parity.get("tensorflow"))
    entry["max_abs_tfjs"] = _max_abs(REC.parity.get("tfjs"))
    entry["failing_outputs"] = {k: _failing_outputs(v) for k, v in REC.parity.items() if _failing_outputs(v)}
    entry["divergence"] = (REC.parity.get("tensorflow") or {}).get("divergence")
    entry["tfjs_cpu"] = REC.cpu
    entry["onnx_ops"] = _onnx_ops(REC.source)
    entry["onnx_passes"] = getattr(REC.source, "details", {}).get("onnx_passes") if REC.source is not None else None
    entry["tf_ops"] = REC.tf_ops
    entry["tfjs_ops"] = REC.tfjs_ops
    entry["tfjs_passes"] = REC.passes
    entry["tfjs_compute_nodes"] = REC.tfjs_nodes
    entry["tfjs_signature_outputs"] = REC.tfjs_signature  # signature key -> tensor in model.json
    entry["converted_inputs"] = REC.converted_inputs  # as _describe recorded them (spec.json)
    entry["model_io"] = _io(REC.source)
    return entry


def _io(source) -> dict | None:
    if source is None:
        return None
    return {"inputs": [{"name": t.name, "shape": t.shape, "dtype": t.dtype} for t in source.inputs], "outputs": list(source.output_names)}


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
    parser.add_argument("--probes", action="store_true", help="also run PROBES (fix candidates that need no code change)")
    parser.add_argument("--probe-index", type=int, help=argparse.SUPPRESS)  # one probe, in a child process
    args = parser.parse_args(argv)

    from converter.logs import configure

    configure(verbose=False)  # framework start-up noise to the native log, as the CLI does
    from converter.pipeline import library_versions
    from fixtures.failure_classes import CASES

    install_hooks()
    if args.probe_index is not None:
        import fixtures.failure_classes as fc

        name, opts, kwargs, onednn_off = PROBES[args.probe_index]
        inject_onnx2tf_kwargs(kwargs)
        cls, _, _, outs = next(c for c in CASES if c[1].__name__ == name)
        with tempfile.TemporaryDirectory(prefix="transferjs-probe-") as tmp:
            entry = run_case(cls, getattr(fc, name), opts, outs, Path(tmp), args.timeout)
        entry["options"] = _probe_label(opts, kwargs, onednn_off)
        args.json.write_text(json.dumps(entry, default=str))
        return 0
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
        for i, (cls, builder, opts, outs) in enumerate(cases, 1):
            log(f"[{i}/{len(cases)}] {cls}: {builder.__name__} {_options_label(opts)}")
            entry = run_case(cls, builder, opts, outs, Path(tmp), args.timeout)
            log(f"    -> {entry['stage']}: {entry['result'][:160]} ({entry['seconds']} s)")
            entries.append(entry)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({**meta, "wall_s": round(time.time() - started, 1), "cases": entries}, indent=1, default=str) + "\n")
    probes = run_probes(args.timeout) if args.probes else []
    if probes:
        args.json.write_text(json.dumps({**meta, "wall_s": round(time.time() - started, 1), "cases": entries, "probes": probes},
                                        indent=1, default=str) + "\n")
    print(markdown(entries))
    if probes:
        print("\nFix candidates that need no code change (not the defaults):\n")
        print(markdown(probes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
