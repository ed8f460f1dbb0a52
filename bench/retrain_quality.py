"""Benchmark: transferjs' heads against a cross-validated logistic regression on the same features.

    .venv/bin/python bench/retrain_quality.py                      # emoji + lfw_subset, 10/30/all per class, 3 draws
    .venv/bin/python bench/retrain_quality.py --tasks emoji --sizes all --draws 1

Tasks (both ship offline): the demo's emoji task (``fixtures/emoji_dataset.py``: 857 images, 5 classes)
and scikit-image's ``lfw_subset`` (200 25x25 grey images: 100 faces, 100 non-faces). Per task one
stratified, seeded test split (30 %) is made once and scores every row; only the training images
are subsampled (N per class, a seeded permutation per draw). The test split chooses nothing.

Columns, all on the same cached ImageNet EfficientNet-Lite0 features (converted by transferjs):
- frozen (Adam head): the previous default, ``retrain.train.train_head`` (dropout, Adam, early stopping on
  a stratified 15 % of the training images);
- transferjs default: ``retrain.evaluation.choose_head`` (L2 softmax regression, strength by 3-fold CV on
  the training images) -- the head ``retrain`` delivers from frozen features;
- logistic regression: scikit-learn ``LogisticRegressionCV`` (standardized, 10 C values, 5-fold CV);
- raw pixels: ``retrain.train.raw_pixel_baseline`` (softmax regression on 32x32 pixels).
"""

from __future__ import annotations

import dataclasses

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def lfw_folder(out: Path) -> Path:
    """scikit-image's lfw_subset as ``out/{face,non-face}/NNN.png``."""
    import skimage.data
    from PIL import Image

    images = skimage.data.lfw_subset()  # the first 100 are faces
    for i, img in enumerate(images):
        folder = out / ("face" if i < 100 else "non-face")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return out


def task_data(name: str, work: Path) -> Path:
    from fixtures.emoji_dataset import build_emoji_dataset

    if name == "emoji":
        build_emoji_dataset(work / "emoji")
        return work / "emoji"
    return lfw_folder(work / "lfw")


def subsample(y: np.ndarray, pool: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """The first ``per_class`` of each class in a seeded permutation of ``pool`` (all when None)."""
    if per_class is None:
        return pool
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(pool[y[pool] == c])[:per_class] for c in np.unique(y)]))


def row(x, y, paths, train, test, classes: int, seed: int, raw: bool) -> dict:
    """Every column's test accuracy for one training subset."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from retrain.evaluation import _hidden_head, choose_head
    from retrain.train import TrainConfig, raw_pixel_baseline

    config = TrainConfig(seed=seed)

    def accuracy(head) -> float:
        return float((head.predict_proba(x[test]).argmax(1) == y[test]).mean())

    t = time.perf_counter()
    result = {"default": accuracy(choose_head(x[train], y[train], classes, config))}
    result["default_seconds"] = round(time.perf_counter() - t, 2)
    result["frozen_adam"] = accuracy(_hidden_head(x[train], y[train], classes, config))
    lr = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=10, cv=min(5, int(np.bincount(y[train]).min())),
                                                              max_iter=5000))
    result["logistic_regression"] = float((lr.fit(x[train], y[train]).predict(x[test]) == y[test]).mean())
    if raw:
        result["raw_pixels"] = raw_pixel_baseline([paths[i] for i in train], y[train], [paths[i] for i in test], y[test],
                                                  seed=seed)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "demo-out" / "efficientnet-lite0")
    p.add_argument("--tasks", default="emoji,lfw")
    p.add_argument("--sizes", default="10,30,all")
    p.add_argument("--draws", type=int, default=3, help="training subsets per size (all: 1)")
    p.add_argument("--cache-dir", type=Path, help="feature cache (default: a temporary one)")
    p.add_argument("--no-raw", action="store_true", help="skip the raw-pixel baseline")
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "retrain_quality.json")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

    from retrain_sweep import converted_backbone, machine, merge_json

    from converter.model import ConvertedModel
    from retrain.api import _preprocessing
    from retrain.data import scan_folder
    from retrain.features import FeatureExtractor, cached_features
    from retrain.linear_probe import stratified_folds

    t0 = time.perf_counter()
    results = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "argv": sys.argv[1:], "tasks": {}}
    with tempfile.TemporaryDirectory(prefix="retrain-quality-") as tmp:
        work = Path(tmp)
        model = ConvertedModel.load(converted_backbone(args.model, work))
        model = dataclasses.replace(model, preprocessing=_preprocessing(model))
        fx = FeatureExtractor(model)
        print("| task | train images / class | train images | frozen (Adam head) | transferjs default | "
              "logistic regression (C by CV) | raw pixels |\n|---|---:|---:|---:|---:|---:|---:|", flush=True)
        for task in args.tasks.split(","):
            data = scan_folder(task_data(task, work))
            paths = [p for p, _ in data.items]
            y = np.array([label for _, label in data.items])
            x, ok, _ = cached_features(fx, paths, args.cache_dir or work / "cache")
            test = np.sort(np.concatenate(stratified_folds(y, 10, seed=0)[:3]))  # 30 %, fixed for every row
            pool = np.setdiff1d(np.arange(len(y)), test)
            rows = []
            for size in args.sizes.split(","):
                per_class = None if size == "all" else int(size)
                for draw in range(1 if per_class is None else args.draws):
                    train = subsample(y, pool, per_class, draw)
                    r = {"per_class": size, "draw": draw, "train_images": len(train), "test_images": len(test),
                         **row(x, y, paths, train, test, len(data.labels), draw, not args.no_raw)}
                    rows.append(r)
                mine = [r for r in rows if r["per_class"] == size]

                def cell(key):
                    vals = [r[key] for r in mine if key in r]
                    return f"{100 * np.mean(vals):.1f} %" + (f" ({', '.join(f'{100 * v:.1f}' for v in vals)})"
                                                             if len(vals) > 1 else "") if vals else "-"

                print(f"| {task} | {size} | {mine[0]['train_images']} | {cell('frozen_adam')} | {cell('default')} | "
                      f"{cell('logistic_regression')} | {cell('raw_pixels')} |", flush=True)
            results["tasks"][task] = {"images": len(y), "labels": data.labels, "test_images": len(test), "rows": rows}
    results["seconds"] = round(time.perf_counter() - t0, 1)
    merge_json(args.json, "probe", results)
    print(f"{results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
