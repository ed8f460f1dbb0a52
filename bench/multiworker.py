"""Benchmark: `retrain --workers 1` vs `--workers 2` on this machine — feature extraction and head rates.

    .venv/bin/python bench/multiworker.py MODEL_DIR [--per-class 40] [--json bench/results/multiworker.json]

MODEL_DIR: a converted model (e.g. the demo's EfficientNet-Lite0, ``demo-out/efficientnet-lite0``).
For each worker count, ``transferjs retrain --workers W --no-baseline`` runs on ``5 x per-class`` emoji
images with an empty feature cache; ``report.json``'s timings give images/s of feature extraction (the
chief's wall time: its shard, the barrier, the store built from the shared cache) and the head's
seconds (L-BFGS from the store, sums all-reduced). Then one 1-worker run with ``--fine-tune 16
--fine-tune-epochs 1`` gives fine-tuning images/s (fine-tuning is not data-parallel yet). On 2 cores
no speed-up is expected: the numbers document the overhead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(model_dir: Path, data: Path, work: Path, name: str, *extra: str) -> dict:
    out = work / name
    command = [sys.executable, "-m", "transferjs.cli", "retrain", str(model_dir), "--data", str(data), "-o", str(out),
               "--cache-dir", str(work / f"cache-{name}"), "--no-baseline", "--no-progress", "--folds", "2", *extra]
    t = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    report = json.loads((out / "report.json").read_text())
    return {"wall_s": round(time.perf_counter() - t, 1), "seconds": report["seconds"], "workers": report["workers"],
            "images": sum(report["dataset"]["counts"].values()), "fine_tune": report.get("fine_tune", {}).get("parameters")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", type=Path)
    p.add_argument("--per-class", type=int, default=40)
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "multiworker.json")
    args = p.parse_args(argv)
    from fixtures.emoji_dataset import build_emoji_dataset

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_emoji_dataset(work / "data", per_class=args.per_class)
        for workers in (1, 2):
            row = run(args.model_dir, work / "data", work, f"w{workers}", "--workers", str(workers))
            row["features_images_per_s"] = round(row["images"] / row["seconds"]["features"], 1)
            rows[f"{workers} workers"] = row
            print(f"{workers} worker(s): features {row['features_images_per_s']} images/s "
                  f"({row['seconds']['features']:.1f} s), head {row['seconds']['train_head']:.1f} s, "
                  f"wall {row['wall_s']} s", flush=True)
        tuned = run(args.model_dir, work / "data", work, "ft", "--workers", "1", "--fine-tune", "16",
                    "--fine-tune-epochs", "1", "--l2", "0.1")
        # one epoch on the check split's training images, then (when kept) one on every image; plus judging
        tuned["note"] = "fine_tune seconds cover the check run's epoch, its judging and a refit epoch when kept"
        rows["fine-tune, 1 worker"] = tuned
        print(f"fine-tune (16 layers, {tuned['fine_tune']:,} weights): {tuned['seconds']['fine_tune']:.1f} s "
              f"for {tuned['images']} images", flush=True)
    base = rows["1 workers"]["features_images_per_s"]
    print(f"features, 2 workers / 1 worker: x{rows['2 workers']['features_images_per_s'] / base:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
