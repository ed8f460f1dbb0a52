"""Benchmark: TF.js inference latency in Node.js, transferjs bundle vs ``tensorflowjs_converter`` on Keras.

    .venv/bin/python bench/tfjs_latency.py [--rounds 3] [--repeat 10] [--json PATH] [--no-efficientnet]

Question: does the route PyTorch -> ONNX -> onnx2tf -> TF.js cost anything at run
time, compared with a model that never left TensorFlow? Goal: ratio B / A <= 1.05.

A. ``keras.applications.MobileNetV2`` (alpha 1, 224x224, 1000 classes, ``weights=None``,
   seeded random weights: ``fixtures.mobilenet_v2_torch.random_mobilenet_v2(seed=0)``,
   i.e. ``randomize_keras_weights`` plus BN statistics calibrated so the output
   depends on the input), saved with ``keras_model.export`` and converted by the
   ``tensorflowjs_converter`` CLI (``--input_format=tf_saved_model``), nothing else.
B. ``fixtures.mobilenet_v2_torch.from_keras`` of the same Keras model (a PyTorch
   module computing the same function) through ``converter.pipeline.convert``
   with default options (ONNX -> onnx2tf -> SavedModel -> TF.js, NHWC input).
E. EfficientNet-Lite0 (ImageNet weights, ``transferjs.demo``'s factory) through
   ``convert``: no Keras twin, its numbers are reported alone.

Both MobileNetV2 bundles are first checked against Keras on one input (wasm and
cpu). Latency: ``converter.runtimes.tfjs_node.run_bundle(repeat=N)``: one Node.js
process per call, one untimed warm-up run, then N timed runs of batch 1 (input
224x224x3 in each bundle's own layout and name). ``--rounds`` rounds of
``--repeat`` runs each; in each round every (backend, bundle) pair runs once, the
bundle order alternating between rounds, so machine noise falls on all alike.
Reported: median and p90 ms over all timed runs, ratio of medians B / A per backend,
and the TF.js op histograms (``converter.graph_ops.tfjs_op_histogram``).
Output: a Markdown table on stdout and ``bench/results/tfjs_latency.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
VENV_BIN = Path(sys.executable).parent
DEFAULT_JSON = REPO / "bench" / "results" / "tfjs_latency.json"
SIZE = 224
BACKENDS = ("wasm", "cpu")
LABELS = {
    "A": "MobileNetV2 Keras -> tensorflowjs_converter",
    "B": "MobileNetV2 PyTorch mirror -> transferjs",
    "E": "EfficientNet-Lite0 PyTorch -> transferjs",
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def signature_inputs(bundle: Path) -> dict:
    """``{input name: shape}`` from a graph model's signature."""
    sig = json.loads((bundle / "model.json").read_text())["signature"]["inputs"]
    return {name.split(":")[0]: [int(d.get("size", -1)) for d in v["tensorShape"]["dim"]] for name, v in sig.items()}


# --------------------------------------------------------------------------- building the bundles


def build_keras_bundle(keras_model, work: Path) -> Path:
    """Side A: ``keras_model.export`` (SavedModel) then the ``tensorflowjs_converter`` CLI."""
    saved = work / "keras_saved_model"
    keras_model.export(str(saved), verbose=False)
    bundle = work / "keras_tfjs"
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", TFDF_DISABLE_WELCOME_MESSAGE="1")
    cmd = [str(VENV_BIN / "tensorflowjs_converter"), "--input_format=tf_saved_model",
           "--signature_name=serving_default", str(saved), str(bundle)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"tensorflowjs_converter failed:\n{proc.stderr[-3000:]}")
    return bundle


def build_transferjs_bundle(module, example, work: Path, name: str, **convert_kwargs):
    """Side B / E: ``converter.pipeline.convert`` with default options (parity checks on)."""
    from converter.pipeline import ConvertOptions, convert

    out = work / name
    options = convert_kwargs.pop("options", ConvertOptions())
    result = convert(module, out, options, overwrite=True, example_inputs=example, **convert_kwargs)
    return result


def build_efficientnet(work: Path):
    from transferjs.demo import FACTORY, FACTORY_KWARGS, efficientnet_lite0_weights
    from converter.pipeline import ConvertOptions, convert

    options = ConvertOptions(input_shapes={"image": [1, 3, SIZE, SIZE]}, model_factory=FACTORY, model_kwargs=FACTORY_KWARGS)
    return convert(efficientnet_lite0_weights(), work / "efficientnet", options, overwrite=True)


# --------------------------------------------------------------------------- measuring


def stats(samples: list[float]) -> dict:
    a = np.asarray(samples, dtype=np.float64)
    return {"n": int(a.size), "median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)),
            "min_ms": float(a.min()), "mean_ms": float(a.mean())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="rounds; each runs every bundle on every backend once")
    p.add_argument("--repeat", type=int, default=10, help="timed runs per bundle per round (after 1 warm-up)")
    p.add_argument("--json", default=str(DEFAULT_JSON))
    p.add_argument("--no-efficientnet", action="store_true")
    p.add_argument("--keep", help="write the bundles here (kept) instead of a temporary folder")
    args = p.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import torch

    from converter.graph_ops import tfjs_op_histogram
    from converter.pipeline import library_versions
    from converter.runtimes.tfjs_node import run_bundle
    from fixtures.mobilenet_v2_torch import from_keras, random_mobilenet_v2

    t_start = time.perf_counter()
    tmp_ctx = None
    if args.keep:
        work = Path(args.keep)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp_ctx = tempfile.TemporaryDirectory(prefix="bench-tfjs-latency-")
        work = Path(tmp_ctx.name)
    try:
        log("Building the Keras MobileNetV2 (random weights, seed 0) and its PyTorch mirror …")
        keras_model = random_mobilenet_v2(SIZE, 1000, seed=0)
        mirror = from_keras(keras_model)
        x = np.random.default_rng(1).uniform(-1, 1, (1, SIZE, SIZE, 3)).astype(np.float32)
        ref = np.asarray(keras_model(x, training=False))
        with torch.no_grad():
            torch_out = mirror(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
        parity = {"keras_vs_torch": float(np.abs(ref - torch_out).max())}

        log("A: keras_model.export + tensorflowjs_converter …")
        t0 = time.perf_counter()
        bundles = {"A": build_keras_bundle(keras_model, work)}
        build_s = {"A": time.perf_counter() - t0}

        log("B: transferjs convert of the PyTorch mirror …")
        t0 = time.perf_counter()
        example = (torch.from_numpy(x.transpose(0, 3, 1, 2).copy()),)
        res_b = build_transferjs_bundle(mirror, example, work, "mirror", input_names=["image"], output_names=["probs"])
        bundles["B"] = res_b.bundle
        build_s["B"] = time.perf_counter() - t0
        reports = {"B": res_b.report}

        inputs, feeds = {}, {}
        name_a, shape_a = next(iter(signature_inputs(bundles["A"]).items()))
        inputs["A"] = {"name": name_a, "shape": shape_a}
        feeds["A"] = {name_a: x}
        spec_b = res_b.model.inputs[0]
        if spec_b.layout not in (None, "NHWC"):
            raise RuntimeError(f"transferjs bundle input layout is {spec_b.layout}; expected NHWC")
        inputs["B"] = {"name": spec_b.name, "shape": spec_b.shape, "layout": spec_b.layout}
        feeds["B"] = {spec_b.name: x}

        if not args.no_efficientnet:
            log("E: transferjs convert of EfficientNet-Lite0 …")
            t0 = time.perf_counter()
            res_e = build_efficientnet(work)
            build_s["E"] = time.perf_counter() - t0
            bundles["E"] = res_e.bundle
            reports["E"] = res_e.report
            spec_e = res_e.model.inputs[0]
            xe = np.random.default_rng(2).uniform(-1, 1, (1, 3, SIZE, SIZE)).astype(np.float32)
            from converter.layout import to_layout

            feeds["E"] = {spec_e.name: to_layout(xe, "NCHW", spec_e.layout)}
            inputs["E"] = {"name": spec_e.name, "shape": spec_e.shape, "layout": spec_e.layout}

        log("Parity against Keras on one input …")
        for backend in BACKENDS:
            for side in ("A", "B"):
                run = run_bundle(bundles[side], [feeds[side]], backend=backend)
                (out,) = run.samples[0].values()
                parity[f"keras_vs_{side}_{backend}"] = float(np.abs(ref - out).max())
        parity["transferjs_report_B"] = {
            k: {o: v["max_abs"] for o, v in r["outputs"].items()} for k, r in reports["B"]["parity"].items()
        } if all("max_abs" in v for r in reports["B"]["parity"].values() for v in r["outputs"].values()) else None

        latency = {side: {b: [] for b in BACKENDS} for side in bundles}
        round_median = {side: {b: [] for b in BACKENDS} for side in bundles}
        tfjs_version = None
        order = list(bundles)
        for r in range(args.rounds):
            sides = order if r % 2 == 0 else order[::-1]
            for backend in BACKENDS:
                for side in sides:
                    run = run_bundle(bundles[side], [feeds[side]], backend=backend, repeat=args.repeat)
                    tfjs_version = run.tfjs_version
                    latency[side][backend] += run.latency_ms
                    round_median[side][backend].append(float(np.median(run.latency_ms)))
                    log(f"round {r + 1}/{args.rounds} {backend:>4} {side}: median {np.median(run.latency_ms):.1f} ms")

        results = {side: {b: stats(latency[side][b]) for b in BACKENDS} for side in bundles}
        ratio = {b: results["B"][b]["median_ms"] / results["A"][b]["median_ms"] for b in BACKENDS}
        ratio_p90 = {b: results["B"][b]["p90_ms"] / results["A"][b]["p90_ms"] for b in BACKENDS}
        # Paired: B and A ran back to back in each round; the median of the per-round ratios
        # is less sensitive to load that changes between rounds.
        ratio_paired = {b: float(np.median(np.asarray(round_median["B"][b]) / np.asarray(round_median["A"][b])))
                        for b in BACKENDS}
        hist = {side: tfjs_op_histogram(bundles[side]) for side in bundles}
        passes = {side: reports[side].get("tfjs", {}).get("passes") for side in reports}
        sizes = {}
        from converter.export.tfjs import bundle_size

        for side in bundles:
            sizes[side] = bundle_size(bundles[side])
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()

    # ------------------------------------------------------------------- report
    lines = [f"TF.js {tfjs_version}, Node.js {subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()}, "
             f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), load avg {os.getloadavg()[0]:.2f}; "
             f"batch 1, {SIZE}x{SIZE}x3; {args.rounds} rounds x {args.repeat} runs = {args.rounds * args.repeat} timed runs per cell", ""]
    lines += ["| bundle | backend | median ms | p90 ms | min ms | B/A (median) | B/A (p90) | B/A (paired rounds) |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for side in bundles:
        for b in BACKENDS:
            s = results[side][b]
            rm = f"{ratio[b]:.3f}" if side == "B" else ""
            rp = f"{ratio_p90[b]:.3f}" if side == "B" else ""
            rr = f"{ratio_paired[b]:.3f}" if side == "B" else ""
            lines.append(f"| {side}: {LABELS[side]} | {b} | {s['median_ms']:.1f} | {s['p90_ms']:.1f} | {s['min_ms']:.1f} | {rm} | {rp} | {rr} |")
    lines += ["", "Parity (max |diff| vs Keras, one input, softmax output): "
              + ", ".join(f"{k} {v:.2e}" for k, v in parity.items() if isinstance(v, float)), ""]
    ops = sorted(set(hist["A"]) | set(hist["B"]) | set(hist.get("E", {})))
    head = "| TF.js op | A | B |" + (" E |" if "E" in hist else "")
    lines += [head, "|---|---:|---:|" + ("---:|" if "E" in hist else "")]
    for op in ops:
        row = f"| {op} | {hist['A'].get(op, 0)} | {hist['B'].get(op, 0)} |"
        if "E" in hist:
            row += f" {hist['E'].get(op, 0)} |"
        mark = " ←" if hist["A"].get(op, 0) != hist["B"].get(op, 0) else ""
        lines.append(row + mark)
    lines += ["", "Goal B/A <= 1.05: " + ", ".join(f"{b} {'met' if ratio[b] <= 1.05 else 'NOT met'} ({ratio[b]:.3f})" for b in BACKENDS)]
    print("\n".join(lines))

    out = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "loadavg_end": os.getloadavg()},
        "versions": {**library_versions(), "tfjs": tfjs_version},
        "method": {"rounds": args.rounds, "repeat": args.repeat, "batch": 1, "size": SIZE, "backends": list(BACKENDS),
                   "runner": "converter.runtimes.tfjs_node.run_bundle (1 warm-up run, then timed runs)"},
        "bundles": {side: {"label": LABELS[side], "input": inputs[side], "bytes": sizes[side],
                           "build_s": round(build_s[side], 1)} for side in bundles},
        "results": results,
        "ratio_B_over_A_median": ratio,
        "ratio_B_over_A_p90": ratio_p90,
        "ratio_B_over_A_paired_rounds": ratio_paired,
        "round_median_ms": round_median,
        "goal_ratio": 1.05,
        "parity_max_abs": parity,
        "tfjs_passes": passes,
        "tfjs_op_histogram": hist,
        "latency_ms": latency,
        "total_s": round(time.perf_counter() - t_start, 1),
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=float) + "\n")
    log(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
