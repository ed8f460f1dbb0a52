"""Benchmark: peak memory of `retrain` grows with the image count only by the feature matrix.

    .venv/bin/python bench/retrain_memory.py [--counts 5000 50000] [--json bench/results/retrain_memory.json]

For each count N, a child process runs ``retrain`` (head, one fine-tuning epoch, raw-pixel
baseline) on N real 64x64 emoji PNGs (the emoji artwork of emoji-datasource-google, 5 classes,
repeated with a per-copy colour shift so no two files are equal — the feature cache is keyed by
content), with the tiny CNN of the tests as the backbone so the run stays short on 2 cores. It
reports the child's peak resident memory (``ru_maxrss``) and the ratio to the smallest N: images
are streamed (feature extraction in batches, fine-tuning through ``tf.data``), so only the
(N, features) matrix and the file list grow with N.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_images(folder: Path, count: int) -> None:
    """``count`` distinct PNGs in 5 class folders, from the 857 emoji (colour-shifted copies)."""
    import numpy as np
    from PIL import Image

    from fixtures.emoji_dataset import build_emoji_dataset

    base = folder.with_name(folder.name + "-base")
    build_emoji_dataset(base)
    sources = sorted(base.rglob("*.png"))
    for i in range(count):
        src = sources[i % len(sources)]
        shift = i // len(sources)
        pixels = np.asarray(Image.open(src).convert("RGB"), np.int16)
        pixels = np.clip(pixels + (shift % 7 - 3, shift % 5 - 2, shift % 3 - 1), 0, 255).astype(np.uint8)
        out = folder / src.parent.name / f"{i:06d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(out)


CHILD = """
import json, resource, sys, time
from retrain import TrainConfig, retrain
t = time.perf_counter()
r = retrain(sys.argv[1], sys.argv[2], sys.argv[3], TrainConfig(epochs=5, fine_tune=1, fine_tune_epochs=1),
            cache_dir=sys.argv[4], progress=False, verify=False, log=lambda m: None)
print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "test_accuracy": r.report["test"]["accuracy"], "split": r.report["dataset"]["split"]}))
"""


def tiny_backbone(folder: Path) -> Path:
    import torch

    from converter import convert
    from fixtures.models import tiny_cnn

    model, example = tiny_cnn()
    onnx = folder / "tiny.onnx"
    torch.onnx.export(model, example, str(onnx), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    return convert(onnx, folder / "tiny").model.directory


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", type=int, nargs="+", default=[5000, 50000])
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "retrain_memory.json")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        backbone = tiny_backbone(tmp)
        for n in args.counts:
            data = tmp / f"images-{n}"
            t = time.perf_counter()
            build_images(data, n)
            made = time.perf_counter() - t
            proc = subprocess.run([sys.executable, "-c", CHILD, str(backbone), str(data), str(tmp / f"out-{n}"),
                                   str(tmp / f"cache-{n}")], cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            row = {"images": n, "make_images_s": round(made, 1), **json.loads(proc.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(f"{n:>7} images: peak RSS {row['peak_rss_mb']:.0f} MB, retrain {row['seconds']:.0f} s, "
                  f"test accuracy {row['test_accuracy']:.3f}", flush=True)
    base = rows[0]["peak_rss_mb"]
    for row in rows:
        row["rss_ratio_to_smallest"] = round(row["peak_rss_mb"] / base, 3)
        print(f"{row['images']:>7} images: peak RSS x{row['rss_ratio_to_smallest']} of {rows[0]['images']} images")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows, "self_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024},
                                    indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
