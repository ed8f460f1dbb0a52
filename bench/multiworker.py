"""Benchmark: `retrain --workers 1` vs `--workers 2` on this machine — feature extraction, head and fine-tuning rates.

    .venv/bin/python bench/multiworker.py MODEL_DIR [--per-class 40] [--json bench/results/multiworker.json]
    .venv/bin/python bench/multiworker.py MODEL_DIR --fine-tune-only   # only the fine-tuning rows (kept: the rest)

MODEL_DIR: a converted model (e.g. the demo's EfficientNet-Lite0, ``demo-out/efficientnet-lite0``).
For each worker count, ``transferjs retrain --workers W --no-baseline`` runs on ``5 x per-class`` emoji
images with an empty feature cache; ``report.json``'s timings give images/s of feature extraction (the
chief's wall time: its shard, the barrier, the store built from the shared cache) and the head's
seconds (L-BFGS from the store, sums all-reduced). Then ``--fine-tune 16 --fine-tune-epochs 1`` with
1 and 2 workers gives fine-tuning images/s (``report.json`` → ``fine_tune.history.train_images_per_s``:
global images per second of the training epoch — decoding, augmentation, steps and, with 2 workers,
the eager all-reduce of every gradient) and the all-reduce bytes per step. On 2 cores no speed-up is
expected: the numbers document the overhead.
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
            "images": sum(report["dataset"]["counts"].values()), "fine_tune": report.get("fine_tune", {}).get("parameters"),
            "fine_tune_history": report.get("fine_tune", {}).get("history")}


def fine_tune_rows(model_dir: Path, data: Path, work: Path) -> dict:
    """``--fine-tune 16 --fine-tune-epochs 1`` with 1 and 2 workers: training images/s and all-reduce bytes per step."""
    rows = {}
    for workers in (1, 2):
        row = run(model_dir, data, work, f"ft{workers}", "--workers", str(workers), "--fine-tune", "16",
                  "--fine-tune-epochs", "1", "--l2", "0.1")
        h = row.pop("fine_tune_history")
        row.update(train_images_per_s=round(h["train_images_per_s"], 2),
                   all_reduce_bytes_per_step=h["all_reduce_bytes_per_step"],
                   note="train_images_per_s: the check run's epoch (its training images, global batches of 32)")
        rows[f"fine-tune, {workers} worker{'s' if workers > 1 else ''}"] = row
        print(f"fine-tune, {workers} worker(s) (16 layers, {row['fine_tune']:,} weights): {row['train_images_per_s']} "
              f"images/s; all-reduce {row['all_reduce_bytes_per_step'] / 1e6:.1f} MB per step", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", type=Path)
    p.add_argument("--per-class", type=int, default=40)
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "multiworker.json")
    p.add_argument("--fine-tune-only", action="store_true", help="rerun only the fine-tuning rows of --json")
    args = p.parse_args(argv)
    from fixtures.emoji_dataset import build_emoji_dataset

    rows = json.loads(args.json.read_text()) if args.fine_tune_only and args.json.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_emoji_dataset(work / "data", per_class=args.per_class)
        for workers in () if args.fine_tune_only else (1, 2):
            row = run(args.model_dir, work / "data", work, f"w{workers}", "--workers", str(workers))
            row.pop("fine_tune_history")
            row["features_images_per_s"] = round(row["images"] / row["seconds"]["features"], 1)
            rows[f"{workers} workers"] = row
            print(f"{workers} worker(s): features {row['features_images_per_s']} images/s "
                  f"({row['seconds']['features']:.1f} s), head {row['seconds']['train_head']:.1f} s, "
                  f"wall {row['wall_s']} s", flush=True)
        rows.update(fine_tune_rows(args.model_dir, work / "data", work))
    if "1 workers" in rows and "2 workers" in rows:
        base = rows["1 workers"]["features_images_per_s"]
        print(f"features, 2 workers / 1 worker: x{rows['2 workers']['features_images_per_s'] / base:.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
