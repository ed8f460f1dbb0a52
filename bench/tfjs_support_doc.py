"""Write docs/tfjs-support.md from bench/results/failure_classes.json.

    .venv/bin/python bench/tfjs_support_doc.py [--json PATH] [--out PATH]

The table of issue 5's failure classes says, for each class, whether every
regression model of ``fixtures/failure_classes.py`` converts with parity in
TensorFlow and in TF.js (wasm), and how; the per-case table below it is the
survey's own (``bench/failure_classes.py``). Re-run that survey first; this
script only reads its JSON.
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
}


def class_rows(cases: list[dict]) -> list[str]:
    by_class: dict[str, list[dict]] = {}
    for c in cases:
        by_class.setdefault(c["class"], []).append(c)
    rows = ["| class | cases with parity in TF and TF.js | max abs TF | max abs TF.js | status | how |", "|---|---:|---:|---:|---|---|"]
    for name, entries in by_class.items():
        ok = [e for e in entries if e["stage"] == "done"]
        # Refused before any conversion, with the op and node named: the outcome the issue asks for.
        refused = [e for e in entries if e["stage"] != "done" and e.get("error_type") == "UnsupportedOpsError"]
        failed = [e for e in entries if e["stage"] != "done" and e not in refused]
        status = "converts" if not failed else ("partly" if ok else "fails")
        if failed:
            status += ": " + "; ".join(f"{e['model']} at {e['stage']}" for e in failed)
        if refused:
            status += "; refused with a precise error: " + ", ".join(e["model"] for e in refused)
        worst_tf = max((e["max_abs_tf"] for e in ok if e["max_abs_tf"] is not None), default=None)
        worst_js = max((e["max_abs_tfjs"] for e in ok if e["max_abs_tfjs"] is not None), default=None)
        how = HOW.get(name.split()[0], "").replace("|", "/")
        rows.append(f"| {name} | {len(ok)} / {len(entries)} | {_fmt(worst_tf)} | {_fmt(worst_js)} | {status} | {how} |")
    return rows


def render(data: dict) -> str:
    v = data["versions"]
    lines = [
        "# What converts to TF.js: issue 5's failure classes",
        "",
        "<!-- Generated by bench/tfjs_support_doc.py from bench/results/failure_classes.json; do not edit by hand. -->",
        "",
        f"- Date: {data['date']}; {data['machine']['cpus']} CPUs",
        f"- Versions: onnx2tf {v.get('onnx2tf')}, tensorflow {v.get('tensorflow')}, tensorflowjs {v.get('tensorflowjs')}, "
        f"onnx {v.get('onnx')}, torch {v.get('torch')}",
        f"- Options: {data['options']}",
        "- Command: `.venv/bin/python bench/failure_classes.py && .venv/bin/python bench/tfjs_support_doc.py`",
        "- Real-world ONNX exports (issue 11: dynamic H/W kept, Paddle-style graphs, old model-zoo files, "
        "failure messages): [real-world-onnx.md](real-world-onnx.md), from `tests/test_real_world_onnx.py`.",
        "",
        "Each case is a small model of `fixtures/failure_classes.py` built to show one class, converted by "
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
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    args.out.write_text(render(json.loads(args.json.read_text())))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
