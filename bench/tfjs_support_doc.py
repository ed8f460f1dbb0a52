"""Write docs/tfjs-support.md from bench/results/failure_classes.json (and onnx_conformance.json).

    .venv/bin/python bench/tfjs_support_doc.py [--json PATH] [--conformance PATH] [--out PATH]

The table of issue 5's and issue 11's failure classes says, for each class, whether
every model of ``fixtures/failure_classes.py`` / ``fixtures/real_world_onnx.py``
converts with parity in TensorFlow and in TF.js (wasm), and how; the per-case table
below it is the survey's own (``bench/failure_classes.py``). "What does not convert,
and why" lists the survey's refusals with their message and the ONNX conformance
run's failures (``bench/onnx_conformance.py``) grouped by op. Re-run the surveys
first; this script only reads their JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.failure_classes import DEFAULT_JSON, _fmt, markdown  # noqa: E402

DEFAULT_OUT = REPO / "docs" / "tfjs-support.md"
DEFAULT_CONFORMANCE = REPO / "bench" / "results" / "onnx_conformance.json"

# How transferjs handles each class; the status column comes from the JSON.
HOW = {
    "1": "onnx2tf's `disable_group_convolution`: one convolution per group, concatenated.",
    "2": "TF.js graph pass `flatten_fused_biases`: the fused bias is made rank-1.",
    "3": "TF.js graph pass: activations the wasm backend cannot fuse are split out of `_FusedConv2D`/`_FusedMatMul`.",
    "4": "ONNX pass `explicit_pre13_softmax`: an opset < 13 Softmax/LogSoftmax/Hardmax whose trailing dims are not all 1 "
         "becomes Flatten -> op(axis=1) -> Reshape (its 2-D meaning, which onnx2tf ignored). Export: "
         "`restore_signature_keys` gives model.json's outputs (and inputs) their names back where tensorflowjs "
         "left tensor names (`Identity_1:0`) for tensors sharing dtype and shape. Flatten, Reshape and Concat "
         "after the layout switch were right already.",
    "5": "ONNX: dynamic dims stay dynamic (issue 11); the ONNX pass `static_reshape_targets` reads the batch "
         "of a Reshape target at run time where height/width are dynamic, because onnx2tf filled a dynamic H*W "
         "from the NHWC tensor's width. Only where onnx2tf needs static shapes (`ConvTranspose`, or a failed "
         "dynamic conversion) do dims get a size: `--input-shape`, else the `--sample` file, else the model's "
         "`metadata_props` (`imgsz`, …), else a batch of 1 when only the batch is dynamic; otherwise one error "
         "naming the dims. The shape used is logged and recorded in report.json (`source.fixed_input_shapes`). "
         "`.pt2` programs keep dynamic height/width too.",
    "6": "ONNX pass `constants_to_initializers`: scalar `Constant` nodes onnxsim leaves (an attention scale "
         "written as a Python float) become initializers, which onnx2tf keeps as tensors. int64 token ids are "
         "int32 in TF.js (metadata.json says so; the runtime narrows them).",
    "7": "ONNX pass `static_reshape_targets`: Reshape targets computed from `Shape` (`flatten(2)`, "
         "`view(b, c, -1)`) become constants, 0 for the dynamic batch, so onnx2tf keeps the shape.",
    "8": "Layers export renames Keras 2 HDF5 weights to the layer names TF.js expects.",
    "9": "LSTM/GRU with state in and out: exported with static shapes (h0's first dim is the layer count, not "
         "the batch), onnx2tf's RNN unrolling, and a TF.js pass that splits fused MatMuls whose bias is computed. "
         "`If`: outer-scope initializers copied into the branches; bundles with control flow run with "
         "`executeAsync` (metadata.json says so). `Loop`: refused before onnx2tf (1.28 has no converter for it) "
         "with one error naming the nodes — the expected outcome for that case.",
    "11.1": "ONNX: symbolic H/W stay dynamic into the SavedModel and the bundle (`static_reshape_targets` reads a "
            "Reshape target's batch at run time). A graph onnx2tf converts only with static shapes (`ConvTranspose`) "
            "is sized from `--input-shape`, `--sample`, the model's `metadata_props` (`imgsz`, …), else refused "
            "naming the dims and the options.",
    "11.2": "ONNX passes `sanitize_node_names` (Paddle's `@` is no TF scope name) and `static_reshape_targets` "
            "(`Shape → Slice → Concat(…, -1)` flatten); `ConvTranspose` with only the batch dynamic: a batch of 1, "
            "recorded in the report.",
    "11.3": "ONNX passes `expand_gelu` (TF.js lacks `Erfc`), `split_multi_axis_unsqueeze`, `layer_norm_keeping_rank` "
            "and `unflatten_linear_layers`; attention tensors keep `[batch, heads, seq, seq]`; int64 ids are int32 in TF.js.",
    "11.4": "`specialise_scalar_ifs` fixes a scalar `If` input (sample rate) from `--sample`, metadata or the constant "
            "it is compared with, else refuses naming the node and input; `lift_batch_moving_transposes` for a dynamic "
            "batch; the LSTM stays a loop, so time stays dynamic.",
    "11.5": "ONNX pass `upgrade_old_opset`: `onnx.version_converter` to opset 13 first; weights listed as graph inputs "
            "are not model inputs.",
    "11.6": "The expected outcome is a precise error: onnx2tf's failure in transferjs terms (node, op, shapes, "
            "transferjs options), its own flag advice removed, the full log kept in the cache dir.",
}


def class_rows(cases: list[dict]) -> list[str]:
    by_class: dict[str, list[dict]] = {}
    for c in cases:
        by_class.setdefault(c["class"], []).append(c)
    rows = ["| class | cases with parity in TF and TF.js | max abs TF | max abs TF.js | status | how |", "|---|---:|---:|---:|---|---|"]
    for name, entries in by_class.items():
        ok = [e for e in entries if e["stage"] == "done"]
        # Refused before any conversion, with the op and node named: the outcome the issue asks for.
        refused = [e for e in entries if e["stage"] != "done" and e.get("error_type") in ("UnsupportedOpsError", e.get("expected_error"))]
        failed = [e for e in entries if e["stage"] != "done" and e not in refused]
        status = "converts" if not failed else ("partly" if ok else "fails")
        if failed:
            status += ": " + "; ".join(f"{e['model']} at {e['stage']}" for e in failed)
        if refused and not ok and not failed:
            status = "refused with a precise error (the expected outcome): " + ", ".join(e["model"] for e in refused)
        elif refused:
            status += "; refused with a precise error: " + ", ".join(e["model"] for e in refused)
        worst_tf = max((e["max_abs_tf"] for e in ok if e["max_abs_tf"] is not None), default=None)
        worst_js = max((e["max_abs_tfjs"] for e in ok if e["max_abs_tfjs"] is not None), default=None)
        how = HOW.get(name.split()[0], "").replace("|", "/")
        rows.append(f"| {name} | {len(ok)} / {len(entries)} | {_fmt(worst_tf)} | {_fmt(worst_js)} | {status} | {how} |")
    return rows


def _cell(text: str, limit: int = 220) -> str:
    text = " ".join(str(text).split())
    return (text[:limit] + (" …" if len(text) > limit else "")).replace("|", "/")


def _message(e: dict) -> str:
    """The error's first line (and the next one when the first ends with ':')."""
    lines = [line.strip() for line in e.get("error", e["result"]).splitlines() if line.strip()]
    return (lines[0] + (" " + lines[1] if lines[0].endswith(":") and len(lines) > 1 else "")) if lines else e["result"]


def refused_rows(cases: list[dict]) -> list[str]:
    """The survey's cases that stop with an error: refusals (expected) first, then failures."""
    rows = ["| class | model | outcome | message |", "|---|---|---|---|"]
    for e in cases:
        if e["stage"] == "done":
            continue
        expected = e.get("error_type") in ("UnsupportedOpsError", e.get("expected_error"))
        outcome = f"refused ({e.get('error_type')}, expected)" if expected else f"fails at {e['stage']}"
        model = e["model"] + (f" ({e['options']})" if e["options"] else "")
        rows.append(f"| {e['class']} | {model} | {outcome} | {_cell(_message(e), 400)} |")
    return rows


def conformance_sections(data: dict) -> list[str]:
    """Conformance failures grouped by op: no converter, wrong values/shapes, conversion or run errors."""
    cases = data["cases"]
    run = [c for c in cases if c["status"] != "skipped"]
    failed = [c for c in run if c["status"] == "failed"]
    meta = data.get("meta", {})
    groups: dict[str, dict[str, list[dict]]] = {"unsupported": {}, "mismatch": {}, "error": {}}
    for c in failed:
        kind = c["stage"] if c["stage"] in ("unsupported", "mismatch") else "error"
        op = c["op"] + (" (expanded)" if c.get("expanded") else "")
        groups[kind].setdefault(op, []).append(c)
    lines = [
        f"From `bench/results/onnx_conformance.json` ({meta.get('date')}, `{meta.get('command')}`; table: "
        f"[onnx-conformance.md](onnx-conformance.md)): {len(run) - len(failed)} of {len(run)} runnable backend-node "
        f"cases pass ({100 * (len(run) - len(failed)) / max(len(run), 1):.0f} %); {len(failed)} fail, by op below.",
        "",
        f"**No onnx2tf converter** (refused before conversion, naming the op): "
        + ", ".join(f"{op} ({len(v)})" for op, v in sorted(groups["unsupported"].items())) + ".",
        "",
        "**Wrong values or shapes** (the SavedModel runs; parity with the ONNX reference fails):",
        "",
        "| op | cases | first difference |",
        "|---|---|---|",
    ]
    for op, v in sorted(groups["mismatch"].items()):
        names = [c["case"].removeprefix("test_") for c in v]
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        lines.append(f"| {op} | {shown} | {_cell(v[0]['message'], 120)} |")
    lines += ["", "**onnx2tf, onnxsim or the SavedModel raise** (stage, cases, first message):", "",
              "| op | stage | cases | first message |", "|---|---|---:|---|"]
    for op, v in sorted(groups["error"].items()):
        stages = ", ".join(sorted({c["stage"] for c in v}))
        lines.append(f"| {op} | {stages} | {len(v)} | {_cell(v[0]['message'], 160)} |")
    return lines


def render(data: dict, conformance: dict | None = None) -> str:
    v = data["versions"]
    lines = [
        "# What converts to TF.js: issue 5's and issue 11's failure classes",
        "",
        "<!-- Generated by bench/tfjs_support_doc.py from bench/results/failure_classes.json and onnx_conformance.json; do not edit by hand. -->",
        "",
        f"- Date: {data['date']}; {data['machine']['cpus']} CPUs",
        f"- Versions: onnx2tf {v.get('onnx2tf')}, tensorflow {v.get('tensorflow')}, tensorflowjs {v.get('tensorflowjs')}, "
        f"onnx {v.get('onnx')}, torch {v.get('torch')}",
        f"- Options: {data['options']}",
        f"- Survey wall time: {data.get('wall_s')} s for {len(data['cases'])} cases",
        "- Command: `.venv/bin/python bench/failure_classes.py && .venv/bin/python bench/tfjs_support_doc.py`",
        "- Real-world ONNX exports (issue 11: dynamic H/W kept, Paddle-style graphs, old model-zoo files, "
        "failure messages): [real-world-onnx.md](real-world-onnx.md), from `tests/test_real_world_onnx.py`.",
        "",
        "Each case is a small model of `fixtures/failure_classes.py` (issue 5, classes 1–9) or "
        "`fixtures/real_world_onnx.py` (issue 11, classes 11.1–11.6; the builders `tests/test_real_world_onnx.py` "
        "and `tests/test_real_world_transformers.py` use) built to show one class, converted by "
        "`converter.convert` with default options; a case converts when both parity checks pass (source vs "
        "TensorFlow, source vs TF.js wasm in Node.js). Max abs: the largest difference over all outputs of the "
        "cases that convert. `tests/test_tfjs_compat.py` asserts the same for each class's fixtures.",
        "",
        *class_rows(data["cases"]),
        "",
        "## Every case",
        "",
        markdown(data["cases"]),
        "",
        "## What does not convert, and why",
        "",
        "### The survey's cases that stop with an error",
        "",
        "A refusal is the expected outcome where the graph cannot be expressed or a size is missing: one message "
        "naming the nodes and what to change.",
        "",
        *refused_rows(data["cases"]),
        "",
        "### ONNX operators (conformance run)",
        "",
        *(conformance_sections(conformance) if conformance else ["(no conformance results)"]),
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--conformance", type=Path, default=DEFAULT_CONFORMANCE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    conformance = json.loads(args.conformance.read_text()) if args.conformance.is_file() else None
    args.out.write_text(render(json.loads(args.json.read_text()), conformance))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
