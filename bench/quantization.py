"""Benchmark: TF.js bundle size and top-1 agreement per quantization mode, on real images.

    .venv/bin/python bench/quantization.py [--images 300] [--json bench/results/quantization.json]

EfficientNet-Lite0 (ImageNet, real weights) is converted once; the float32, float16,
uint16 and uint8 bundles are then run in TF.js (Node.js, wasm) on the same real
images: the emoji artwork of the npm package emoji-datasource-google (64x64 PNG,
composited onto white) and scikit-image's photos. Reported per mode: bundle bytes,
ratio to float32, top-1 agreement with the float32 bundle, max |p - p_float32|.
Goal (issue): uint8 <= 0.27 x float32 with top-1 agreement >= 99 %.
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


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=300, help="emoji images (plus 5 photos)")
    p.add_argument("--json", default=str(ROOT / "bench" / "results" / "quantization.json"))
    args = p.parse_args(argv)

    from transferjs.demo import PREPROCESSING, run
    from converter.export import write_tfjs_bundle
    from converter.export.weights import float32_bytes, shard_bytes
    from converter.export.tfjs import ExportOptions
    from converter.images import preprocess
    from transferjs.console import configure
    from converter.runtimes.tfjs_node import run_bundle

    configure()
    t0 = time.perf_counter()
    images, names = real_images(args.images)
    x = preprocess(images, PREPROCESSING, "NHWC")
    with tempfile.TemporaryDirectory() as tmp:
        model = run(Path(tmp) / "effnet")["result"].model
        (inp,), (out,) = model.inputs, model.outputs
        batches = [{inp.name: x[i : i + 32]} for i in range(0, len(x), 32)]
        rows, probs = [], {}
        for mode in (None, "float16", "uint16", "uint8"):
            bundle = Path(tmp) / f"bundle-{mode or 'float32'}"
            size = write_tfjs_bundle(model, bundle, ExportOptions(quantize=mode))["bytes"]
            outs = run_bundle(bundle, batches, backend="wasm").samples
            probs[mode] = softmax(np.concatenate([o[out.name] for o in outs]))
            ref = probs[None]
            rows.append({
                "mode": mode or "float32", "bytes": size, "ratio": shard_bytes(bundle) / float32_bytes(bundle),
                "top1_agreement": float(np.mean(probs[mode].argmax(-1) == ref.argmax(-1))),
                "max_prob_diff": float(np.abs(probs[mode] - ref).max()),
            })
    result = {"images": len(images), "emoji": args.images, "seconds": round(time.perf_counter() - t0, 1), "modes": rows}
    print(f"EfficientNet-Lite0, {len(images)} real images ({args.images} emoji PNGs + 5 photos), TF.js wasm\n")
    print("| weights | bundle MB | × float32 | top-1 agreement with float32 | max abs Δ probability |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['bytes'] / 1e6:.2f} | {r['ratio']:.3f} | {r['top1_agreement']:.1%} | {r['max_prob_diff']:.4f} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
