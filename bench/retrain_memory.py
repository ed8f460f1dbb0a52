"""Benchmark: peak memory of retraining at growing image counts.

    .venv/bin/python bench/retrain_memory.py [--mode store] [--counts 5000 100000] [--json FILE]
    .venv/bin/python bench/retrain_memory.py --mode memory --counts 5000 100000   # the in-memory head, for comparison
    .venv/bin/python bench/retrain_memory.py --mode retrain --counts 5000 50000   # the whole retrain on PNGs

``--mode store`` (default): for each count N a child process writes N synthetic EfficientNet-Lite0-sized
features (1280-d float32, 5 Gaussian classes, generated chunk by chunk from a seed) into a
``FeatureStore`` and runs phase 1 as ``retrain`` does above ``kfold_max_images`` (test split, check head
and delivered head fitted from the store chunk by chunk; ``l2`` fixed at 0.1 so the run takes minutes,
not the 22 fits per head of choosing it). ``--mode memory`` runs the same phase on the same features
held as one (N, 1280) array, as retrain did before the store. The child's peak resident memory
(``ru_maxrss``) and its ratio to the smallest N are printed; goal: 100,000 images within 1.2 x 5,000.

``--mode retrain``: a child process runs ``retrain`` (head, one fine-tuning epoch, raw-pixel
baseline) on N real 64x64 emoji PNGs (the emoji artwork of emoji-datasource-google, 5 classes,
repeated with a per-copy colour shift so no two files are equal — the feature cache is keyed by
content), with the tiny CNN of the tests as the backbone so the run stays short on 2 cores.
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


PHASE_CHILD = """
import json, resource, sys, time
import numpy as np
from retrain.evaluation import plan_evaluation
from retrain.feature_store import CHUNK_ROWS, FeatureStoreWriter
from retrain.streamed_phase import StoreRows, frozen_head_phase
from retrain.train import TrainConfig
n, mode, folder, dim, classes = int(sys.argv[1]), sys.argv[2], sys.argv[3], 1280, 5
rng = np.random.default_rng(0)
centres, y = rng.normal(0, 0.08, (classes, dim)), rng.integers(0, classes, n)
def chunk(start):
    stop = min(start + CHUNK_ROWS, n)
    noise = np.random.default_rng([1, start]).normal(0, 1.0, (stop - start, dim))
    return np.maximum(centres[y[start:stop]] + noise, 0).astype(np.float32)  # ReLU-like, as pooled features
t = time.perf_counter()
if mode == "store":
    with FeatureStoreWriter(folder, n, dim, key="synthetic") as writer:
        for start in range(0, n, CHUNK_ROWS):
            writer.append(chunk(start))
        x = StoreRows(writer.close(), np.arange(n))
else:
    x = np.concatenate([chunk(start) for start in range(0, n, CHUNK_ROWS)])
made = time.perf_counter() - t
config = TrainConfig(l2=0.1)
t = time.perf_counter()
frozen = frozen_head_phase(x, y, [str(c) for c in range(classes)], plan_evaluation(y, config), config, log=lambda m: None)
print(json.dumps({"make_features_s": made, "seconds": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "test_accuracy": frozen["held"]["accuracy"]}))
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
    p.add_argument("--mode", choices=("store", "memory", "retrain"), default="store")
    p.add_argument("--counts", type=int, nargs="+", default=[5000, 100000])
    p.add_argument("--json", type=Path, default=None, help="default bench/results/retrain_memory[-MODE].json")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    rows = run_phase(args) if args.mode != "retrain" else run_retrain(args)
    if rows is None:
        return 1
    base = rows[0]["peak_rss_mb"]
    for row in rows:
        row["rss_ratio_to_smallest"] = round(row["peak_rss_mb"] / base, 3)
        print(f"{row['images']:>7} images: peak RSS x{row['rss_ratio_to_smallest']} of {rows[0]['images']} images")
    suffix = "" if args.mode == "retrain" else f"-{args.mode}"
    path = args.json or ROOT / "bench" / "results" / f"retrain_memory{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"mode": args.mode, "rows": rows}, indent=2) + "\n")
    return 0


def run_phase(args) -> list | None:
    """``--mode store`` / ``memory``: phase 1 on synthetic 1280-d features, one child process per count."""
    rows = []
    with tempfile.TemporaryDirectory(dir=ROOT / "bench") as tmp:  # on disk: /tmp may be memory
        for n in args.counts:
            proc = subprocess.run([sys.executable, "-c", PHASE_CHILD, str(n), args.mode, str(Path(tmp) / f"store-{n}")],
                                  cwd=ROOT, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return None
            row = {"images": n, **json.loads(proc.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(f"{n:>7} images ({args.mode}): peak RSS {row['peak_rss_mb']:.0f} MB, features {row['make_features_s']:.0f} s, "
                  f"head {row['seconds']:.0f} s, test accuracy {row['test_accuracy']:.3f}", flush=True)
    return rows


def run_retrain(args) -> list | None:
    """``--mode retrain``: the whole ``retrain`` on PNGs with the tiny CNN."""
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
                return None
            row = {"images": n, "make_images_s": round(made, 1), **json.loads(proc.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(f"{n:>7} images: peak RSS {row['peak_rss_mb']:.0f} MB, retrain {row['seconds']:.0f} s, "
                  f"test accuracy {row['test_accuracy']:.3f}", flush=True)
    return rows


if __name__ == "__main__":
    sys.exit(main())
