"""Benchmark: TF.js bundle size, top-1 agreement, probability change and wasm latency per quantization mode.

    .venv/bin/python bench/quantization.py [--images 300] [--rounds 3] [--repeat 20] [--mobilenet]
                                           [--calibration-emoji 64] [--calibration-images PATH]
                                           [--json bench/results/quantization.json]

EfficientNet-Lite0 (ImageNet, real weights, ``transferjs.demo``'s conversion) is exported
as float32, float16, uint16, uint8 (per output channel), uint8-at-load (the same kernels,
restored once at the first run: ``--restore-at-load``) and uint8-per-tensor (tensorflowjs'
one range per tensor, fragile tensors kept float16), and each bundle runs in TF.js (Node.js,
wasm) on the same real images: ``--images`` emoji PNGs of the npm package
emoji-datasource-google (64x64, composited onto white) plus scikit-image's 5 photos.
Reported per mode: weight bytes and their ratio to float32, top-1 agreement with the
float32 bundle (all images, and the decisive ones: top-1/top-2 margin above the uint8 rule's
``decisive_margin``, 0.3), the largest
change of any class probability, and the median wasm latency of batch 1 (``--rounds``
rounds of ``--repeat`` timed runs after a warm-up, bundle order alternating per round),
and the export time (uint8: with its GPTQ rounding on the 20 calibration photos).
``--mobilenet`` adds a seeded random, batch-norm-calibrated MobileNetV2 (Keras
architecture, converted from its PyTorch mirror) on the same images.
``--calibration-emoji N`` adds a uint8 row calibrated on N emoji PNGs disjoint from the benchmark's
(``calibration_emoji``) instead of the 20 photo crops; ``--calibration-images PATH`` one calibrated on
PATH (``transferjs export --calibration-images``).
Goal (issue 16): uint8 <= 0.26 x float32 weights, top-1 agreement >= 99.5 %, latency <= 1.05 x float32.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODES = (None, "float16", "uint16", "uint8", "uint8-at-load", "uint8-per-tensor")


def export_options(mode: str | None):
    """``ExportOptions`` of a row: ``uint8-at-load`` is ``--quantize uint8 --restore-at-load``."""
    from converter.export.tfjs import ExportOptions

    return ExportOptions(quantize="uint8", restore_at_load=True) if mode == "uint8-at-load" else ExportOptions(quantize=mode)


def real_images(n: int) -> tuple[list[np.ndarray], list[str]]:
    """``n`` emoji PNGs (every k-th, for variety) plus scikit-image's photos, as uint8 RGB."""
    import skimage.data

    from converter.images import load_rgb

    folder = ROOT / "js" / "node_modules" / "emoji-datasource-google" / "img" / "google" / "64"
    files = sorted(folder.glob("*.png"))
    files = files[:: max(1, len(files) // n)][:n]
    images = [load_rgb(f) for f in files]
    names = [f.name for f in files]
    for photo in ("chelsea", "coffee", "astronaut", "rocket", "cat"):
        images.append(getattr(skimage.data, photo)()[..., :3])
        names.append(f"skimage:{photo}")
    return images, names


def calibration_emoji(n: int, benchmark: int) -> list[Path]:
    """``n`` emoji PNGs none of which ``real_images(benchmark)`` uses, nor a variant of one (a skin tone
    or gender of the same first code point): it takes every k-th file from the first; these are spread
    evenly over the other files whose first code point no benchmark file has.

    Example:
        >>> set(calibration_emoji(64, 300)) & set(benchmark_files)
        set()
    """
    folder = ROOT / "js" / "node_modules" / "emoji-datasource-google" / "img" / "google" / "64"
    files = sorted(folder.glob("*.png"))
    k = max(1, len(files) // benchmark)
    taken = {f.name.split("-")[0].split(".")[0] for f in files[::k][:benchmark]}
    others = [f for f in files if f.name.split("-")[0].split(".")[0] not in taken]
    if len(others) < n:
        raise ValueError(f"only {len(others)} emoji share no code point with the {benchmark} benchmark ones; asked {n}")
    return others[:: max(1, len(others) // n)][:n]


def measure(model, x: np.ndarray, tmp: Path, rounds: int, repeat: int, calibrations: dict | None = None,
            names: list[str] | None = None, modes=MODES) -> list[dict]:
    """Export ``model`` in each of ``modes`` (float32 first), run each bundle on ``x`` in TF.js wasm; one row per mode.

    ``calibrations``: ``{row name: image paths}``, each one more uint8 row calibrated on those images;
    ``names``: the images' names, to list the ones whose top-1 flips (in the JSON rows)."""
    from converter.export.bundle import write_tfjs_bundle
    from converter.export.tfjs import ExportOptions
    from converter.export.weights import float32_bytes, shard_bytes
    from converter.runtimes.tfjs_node import run_bundle
    from converter.verify.compare import softmax
    from converter.verify.tolerance import TOLERANCES, decisive_margin

    (inp,), (out,) = model.inputs, model.outputs
    batches = [{inp.name: x[i : i + 32]} for i in range(0, len(x), 32)]
    bundles, probs, seconds = {}, {}, {}
    options = {mode: export_options(mode) for mode in modes}
    for name, paths in (calibrations or {}).items():
        options[name] = ExportOptions(quantize="uint8", calibration_images=tuple(str(p) for p in paths))
    modes = tuple(options)
    for i, mode in enumerate(modes):
        bundles[mode] = tmp / f"bundle-{i}"
        t0 = time.perf_counter()
        write_tfjs_bundle(model, bundles[mode], options[mode])
        seconds[mode] = time.perf_counter() - t0
        outs = np.concatenate([o[out.name] for o in run_bundle(bundles[mode], batches, backend="wasm").samples])
        probs[mode] = softmax(outs.astype(np.float64)) if out.meaning != "probabilities" else outs.astype(np.float64)
    latency = {m: [] for m in modes}
    for r in range(rounds):
        for mode in modes if r % 2 == 0 else modes[::-1]:
            latency[mode] += run_bundle(bundles[mode], [{inp.name: x[:1]}], backend="wasm", repeat=repeat).latency_ms
    ref = probs[None]
    top2 = np.sort(ref, -1)[:, -2:]
    decisive = top2[:, 1] - top2[:, 0] > decisive_margin(TOLERANCES["uint8"])
    rows = []
    for mode in modes:
        same = probs[mode].argmax(-1) == ref.argmax(-1)
        rows.append({
            "mode": mode or "float32", "weight_bytes": shard_bytes(bundles[mode]),
            "ratio": shard_bytes(bundles[mode]) / float32_bytes(bundles[mode]),
            "top1_agreement": float(np.mean(same)), "top1_agreement_decisive": float(np.mean(same[decisive])) if decisive.any() else None,
            "decisive": int(decisive.sum()), "max_prob_diff": float(np.abs(probs[mode] - ref).max()),
            "mean_prob_diff": float(np.abs(probs[mode] - ref).mean()),
            "flipped": [names[i] for i in np.flatnonzero(~same)] if names else int((~same).sum()),
            "latency_ms_median": float(np.median(latency[mode])), "latency_ms_min": float(np.min(latency[mode])),
            "latency_runs": len(latency[mode]), "export_s": round(seconds[mode], 1),
        })
    for row in rows:  # the minimum: what the machine's other load added least to
        row["latency_ratio"] = row["latency_ms_median"] / rows[0]["latency_ms_median"]
        row["latency_min_ratio"] = row["latency_ms_min"] / rows[0]["latency_ms_min"]
    return rows


def table(title: str, rows: list[dict]) -> str:
    lines = [title, "", "| weights | weights MB | × float32 | top-1 agreement (all / decisive) | max Δ probability "
             "| wasm ms median (× float32); min (×) | export s (× float32) |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['weight_bytes'] / 1e6:.2f} | {r['ratio']:.3f} | {r['top1_agreement']:.1%} / "
                     f"{r['top1_agreement_decisive'] or 0:.1%} of {r['decisive']} | {r['max_prob_diff']:.4f} | "
                     f"{r['latency_ms_median']:.1f} ({r['latency_ratio']:.2f}); min {r['latency_ms_min']:.1f} "
                     f"({r['latency_min_ratio']:.2f}) | {r['export_s']:.1f} ({r['export_s'] / rows[0]['export_s']:.2f}) |")
    return "\n".join(lines)


def _mobilenet(root: Path):
    from converter import convert
    from converter.pipeline import ConvertOptions
    from fixtures.mobilenet_v2_torch import from_keras, random_mobilenet_v2
    from transferjs.demo import PREPROCESSING

    import torch

    module = from_keras(random_mobilenet_v2()).eval()
    # The preprocessing the images get here: what uint8's calibration photos are given too.
    options = ConvertOptions(preprocessing=PREPROCESSING)
    return convert(module, root / "mobilenet", options, example_inputs=(torch.zeros(1, 3, 224, 224),)).model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=300, help="emoji images (plus 5 photos)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--mobilenet", action="store_true", help="also a random, BN-calibrated MobileNetV2")
    p.add_argument("--calibration-emoji", type=int, default=0, metavar="N",
                   help="also uint8 calibrated on N emoji disjoint from the benchmark's (instead of photo crops)")
    p.add_argument("--calibration-images", metavar="PATH", help="also uint8 calibrated on these images (folder or file)")
    p.add_argument("--json", default=str(ROOT / "bench" / "results" / "quantization.json"))
    p.add_argument("--modes", default=",".join(m or "float32" for m in MODES),
                   help="comma-separated rows (float32 always first), e.g. float32,uint8,uint8-at-load")
    args = p.parse_args(argv)
    modes = (None, *[m for m in args.modes.split(",") if m and m != "float32"])

    from converter.images import preprocess
    from transferjs.console import configure
    from transferjs.demo import PREPROCESSING, run

    configure()
    t0 = time.perf_counter()
    images, names = real_images(args.images)
    result = {"images": len(images), "emoji": args.images, "models": {}}
    calibrations = {}
    if args.calibration_emoji:
        calibrations[f"uint8, calibrated on {args.calibration_emoji} other emoji"] = calibration_emoji(args.calibration_emoji,
                                                                                                     args.images)
    if args.calibration_images:
        calibrations[f"uint8, calibrated on {args.calibration_images}"] = [args.calibration_images]
    with tempfile.TemporaryDirectory() as tmp:
        model = run(Path(tmp) / "effnet")["result"].model
        x = preprocess(images, PREPROCESSING, "NHWC")
        result["models"]["EfficientNet-Lite0"] = measure(model, x, Path(tmp), args.rounds, args.repeat,
                                                            calibrations, names, modes)
        if args.mobilenet:
            (Path(tmp) / "mn").mkdir()  # same input: 224 x 224 in [-1, 1], MobileNetV2's range too
            result["models"]["MobileNetV2 (random, BN-calibrated)"] = measure(_mobilenet(Path(tmp)), x, Path(tmp) / "mn",
                                                                               args.rounds, args.repeat, calibrations, names, modes)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    for name, rows in result["models"].items():
        print(table(f"{name}, {len(images)} real images ({args.images} emoji PNGs + 5 photos), TF.js wasm", rows) + "\n")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
