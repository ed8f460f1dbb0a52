"""Benchmark: phase 1 (head training, 20 epochs) with the feature cache vs recomputing features every epoch.

    .venv/bin/python bench/feature_cache.py [--per-class 30] [--epochs 20] [--json bench/results/feature_cache.json]

Backbone: the ImageNet EfficientNet-Lite0 converted from PyTorch by transferjs (224x224).
Data: the emoji dataset (fixtures/emoji_dataset.py), the first ``--per-class`` images of each
of the 5 classes (0: all 857), split 80 / 20 into train / validation (retrain.data.split).

All three runs call the project's own ``retrain.train.train_head`` (same head, seed, data
order, 20 epochs, early stopping off) and differ only in where the features come from:

- cache, cold: ``cached_features`` computes every image once into an empty cache, then 20 epochs;
- cache, warm: ``cached_features`` reads them back (a second run), then 20 epochs;
- recompute: the features of each batch are computed from the image files (decode, resize,
  normalise, backbone) every time the head asks for them, every epoch, training and validation.

Goal (issue 6): the cache >= 10x faster than recomputing.
"""

from __future__ import annotations

import dataclasses

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class RecomputedFeatures:
    """Array-like features that run the backbone on the images each time they are indexed.

    ``train_head`` indexes the training features per batch (``x[i]``) and passes the validation
    features to the head whole (``np.asarray``), so every epoch recomputes all of them.
    """

    def __init__(self, fx, paths: list[Path], batch_size: int = 32):
        self.fx, self.paths, self.batch_size = fx, list(paths), batch_size
        self.shape = (len(self.paths), fx.dim)
        self.images = 0

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index) -> np.ndarray:
        from converter.images import load_rgb, preprocess

        chosen = [self.paths[i] for i in np.arange(len(self.paths))[index]]
        out = []
        for start in range(0, len(chosen), self.batch_size):
            images = [load_rgb(p) for p in chosen[start:start + self.batch_size]]
            out.append(self.fx(preprocess(images, self.fx.model.preprocessing, self.fx.input.layout or "NHWC")))
        self.images += len(chosen)
        return np.concatenate(out)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self[:]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "demo-out" / "efficientnet-lite0")
    p.add_argument("--per-class", type=int, default=30, help="images per class (0: all 857)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "feature_cache.json")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

    from converter.model import ConvertedModel
    from fixtures.emoji_dataset import build_emoji_dataset
    from retrain import TrainConfig
    from retrain.api import _preprocessing
    from retrain.data import scan_folder, split
    from retrain.features import FeatureExtractor, cached_features
    from retrain.train import train_head

    sys.path.insert(0, str(ROOT / "bench"))
    from retrain_sweep import converted_backbone, machine

    config = TrainConfig(epochs=args.epochs, patience=args.epochs + 1, seed=0)
    with tempfile.TemporaryDirectory(prefix="feature-cache-") as tmp:
        work = Path(tmp)
        model = ConvertedModel.load(converted_backbone(args.model, work))
        model = dataclasses.replace(model, preprocessing=_preprocessing(model))
        counts = build_emoji_dataset(work / "emoji", args.per_class or None)
        data = scan_folder(work / "emoji")
        parts = split(data, val=0.2, test=0.0, seed=0)
        paths = {k: [data.items[i][0] for i in v] for k, v in parts.items()}
        y = {k: np.array([data.items[i][1] for i in v]) for k, v in parts.items()}
        fx = FeatureExtractor(model)
        fx(np.zeros((1, *fx.input.shape[1:]), np.float32))  # trace once, outside every timing
        print(f"{counts} -> train {len(y['train'])}, val {len(y['val'])}; {args.epochs} epochs; {machine()}", flush=True)

        def head_run(x_train, x_val):
            t = time.perf_counter()
            head, history = train_head(x_train, y["train"], x_val, y["val"], len(data.labels), config, progress=False,
                                       log=lambda *a: None)
            return head, history, time.perf_counter() - t

        runs = {}
        for name in ("cache, cold", "cache, warm"):
            t = time.perf_counter()
            feats, _, _ = cached_features(fx, paths["train"] + paths["val"], work / "cache")
            features_s = time.perf_counter() - t
            n = len(y["train"])
            head, history, train_s = head_run(feats[:n], feats[n:])
            runs[name] = {"features_s": features_s, "train_s": train_s, "total_s": features_s + train_s,
                          "epochs": len(history["val_loss"]), "head": [w.numpy() for w in head.weights]}
            print(f"{name}: features {features_s:.2f} s + {len(history['val_loss'])} epochs {train_s:.2f} s", flush=True)

        x_train, x_val = RecomputedFeatures(fx, paths["train"]), RecomputedFeatures(fx, paths["val"])
        head, history, train_s = head_run(x_train, x_val)
        runs["recompute"] = {"features_s": None, "train_s": train_s, "total_s": train_s, "epochs": len(history["val_loss"]),
                             "images_through_backbone": x_train.images + x_val.images,
                             "head": [w.numpy() for w in head.weights]}
        print(f"recompute: {len(history['val_loss'])} epochs {train_s:.2f} s "
              f"({runs['recompute']['images_through_backbone']} images through the backbone)", flush=True)

    diff = max(float(np.abs(a - b).max()) for a, b in zip(runs["recompute"]["head"], runs["cache, warm"]["head"]))
    for r in runs.values():
        r.pop("head")
        for k in ("features_s", "train_s", "total_s"):
            r[k] = round(r[k], 2) if r[k] is not None else None
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": machine(), "epochs": args.epochs, "per_class": args.per_class,
        "images": {"train": len(y["train"]), "val": len(y["val"])}, "runs": runs,
        "ratio_cold": runs["recompute"]["total_s"] / runs["cache, cold"]["total_s"],
        "ratio_warm": runs["recompute"]["total_s"] / runs["cache, warm"]["total_s"],
        "max_abs_head_weight_diff_recompute_vs_cache": diff,
    }
    print("\n| phase 1, 20 epochs | features s | head epochs s | total s | recompute / this |")
    print("|---|---:|---:|---:|---:|")
    for name, r in runs.items():
        ratio = runs["recompute"]["total_s"] / r["total_s"]
        feat = "-" if r["features_s"] is None else f"{r['features_s']:.2f}"
        print(f"| {name} | {feat} | {r['train_s']:.2f} | {r['total_s']:.2f} | {ratio:.1f}x |")
    print(f"head weights, recompute vs cache: max |diff| {diff:.2g} (same features, same training)")
    print(f"ratio (goal >= 10x): cold cache {result['ratio_cold']:.1f}x, warm cache {result['ratio_warm']:.1f}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
