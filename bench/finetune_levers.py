"""Study (issue 15): fine-tuning settings on every fold of the demo's own 5-fold plan, not fold 1 alone.

    .venv/bin/python bench/finetune_levers.py --model demo-out/efficientnet-lite0 --name all-0.9 \\
        --layers 49 --epochs 4 --lr 5e-4 --decay 0.9
    .venv/bin/python bench/finetune_levers.py --model demo-out/efficientnet-lite0 --folds 1,2 --name quick
    .venv/bin/python bench/finetune_levers.py --model demo-out/efficientnet-lite0 --name mixup --layers 49 \
        --epochs 6 --lr 5e-4 --decay 0.9 --mixup 0.4 --zoom 0.25 --rotation 0.1

The images are the demo's 857 emoji (``fixtures/emoji_dataset.py``); the features, the 5-fold plan
(``plan_evaluation``, seed 0) and each fold's frozen head (``frozen_phase``: multi-level or default
features, chosen by inner CV) are exactly ``make demo``'s. Each fold's head is then fine-tuned with the
backbone (``retrain.finetune.fine_tune``, the code ``retrain`` runs) on the other four folds and scored on
its fold, beside the frozen head on the same images. The 5-fold mean of the fine-tuned column is the
number the issue's ">= 80 % fine-tuned" goal is about. Results are added to
``bench/results/finetune_levers.json`` under ``--name``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "finetune_levers.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a converted EfficientNet-Lite0 (make demo's demo-out/efficientnet-lite0)")
    ap.add_argument("--work", default="/tmp/finetune-levers", help="emoji images and the feature cache")
    ap.add_argument("--name", required=True, help="the row's key in the results JSON")
    ap.add_argument("--folds", default="1,2,3,4,5", help="which folds of the 5 to fine-tune (1-based)")
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--decay", type=float, default=1.0)
    ap.add_argument("--smoothing", type=float, default=0.1)
    ap.add_argument("--mixup", type=float, default=0.0, help="TrainConfig.fine_tune_mixup (Beta concentration)")
    ap.add_argument("--zoom", type=float, help="example_augmentation.ZOOM (default 0.1: +-10 %%)")
    ap.add_argument("--rotation", type=float, help="example_augmentation.ROTATION in turns (default 0.05: +-18 deg)")
    ap.add_argument("--wise", default="", help="comma-separated fine-tuned weight shares to score as well"
                    " (WiSE-FT, retrain.finetune.toward_start), e.g. 0.5,0.7")
    ap.add_argument("--no-multi-level", action="store_true")
    args = ap.parse_args(argv)

    import tensorflow as tf

    from fixtures.emoji_dataset import build_emoji_dataset
    from retrain import TrainConfig
    from retrain.api import _backbone, _feature_extractor, _features
    from retrain.data import scan_folder
    from retrain.evaluation import head_columns, keras_head, plan_evaluation
    from retrain.finetune import fine_tune, predict, toward_start
    from retrain.phases import frozen_phase
    from retrain.train import evaluate

    import retrain.example_augmentation as augmentation

    tf.config.experimental.enable_op_determinism()
    if args.zoom is not None:
        augmentation.ZOOM = args.zoom
    if args.rotation is not None:
        augmentation.ROTATION = args.rotation * 2 * np.pi
    work = Path(args.work)
    data = work / "emoji-data"
    if not data.is_dir():
        build_emoji_dataset(data)
    fields = {"fine_tune": args.layers, "fine_tune_epochs": args.epochs, "fine_tune_learning_rate": args.lr,
              "fine_tune_layer_decay": args.decay, "fine_tune_label_smoothing": args.smoothing,
              "multi_level": not args.no_multi_level}
    if args.mixup:
        fields["fine_tune_mixup"] = args.mixup
    fields["fine_tune_weight_average"] = 1.0  # the fine-tuned column is as trained; --wise scores the averages
    config = TrainConfig(**fields)
    backbone = _backbone(args.model, None, print)
    dataset = scan_folder(data)
    fx = _feature_extractor(backbone, None, config.multi_level)
    x, usable, _ = _features(fx, dataset, work / "feature-cache", False, config, contextlib.ExitStack())
    items = [(dataset.items[i][0], dataset.items[i][1]) for i in usable]
    y = np.array([label for _, label in items], int)
    plan = plan_evaluation(y, config)
    t0 = time.perf_counter()
    frozen = frozen_phase(x, y, dataset.labels, plan, config, lambda m: None, fx.base_dim if fx.taps else None)
    print(f"frozen 5-fold {100 * frozen['held']['accuracy']:.1f} % ({time.perf_counter() - t0:.0f} s)", flush=True)

    rows = []
    for k in [int(f) - 1 for f in args.folds.split(",")]:
        t0 = time.perf_counter()
        fold, head = plan.folds[k], frozen["held"]["heads"][k]
        train = [items[i] for i in np.setdiff1d(np.arange(len(items)), fold)]
        judge = [items[i] for i in fold]
        fold_fx = fx.for_columns(head_columns(head))
        graph, tuned_head = fold_fx.trainable(config.fine_tune), keras_head(head, len(dataset.labels), config)
        variables = graph.trainable_variables + tuned_head.trainable_variables
        start = [v.numpy() for v in variables]
        result = fine_tune(graph, tuned_head, fold_fx, train, judge, len(dataset.labels), config, progress=False,
                           log=lambda m: None)
        tuned_p = predict(result["forward"], judge, fx.model, config.batch_size, classes=len(dataset.labels))
        frozen_p = frozen["held"]["probabilities"][fold]
        trained = [v.numpy() for v in variables]
        wise = {}
        for share in [float(s) for s in args.wise.split(",") if s]:
            toward_start(variables, start, share)
            wise[f"{share:g}"] = evaluate(predict(result["forward"], judge, fx.model, config.batch_size,
                                                  classes=len(dataset.labels)), y[fold])["accuracy"]
            for v, value in zip(variables, trained):
                v.assign(value)
        row = {"fold": k + 1, "images": len(fold), "features": fold_fx.dim,
               "frozen": evaluate(frozen_p, y[fold])["accuracy"], "fine_tuned": evaluate(tuned_p, y[fold])["accuracy"],
               "average_of_both": evaluate((tuned_p + frozen_p) / 2, y[fold])["accuracy"],
               "weight_average": wise,
               "per_epoch": [round(a, 4) for a in result["history"].get("val_accuracy", [])],
               "train_accuracy_last": (result["history"].get("accuracy") or [None])[-1],
               "seconds": round(time.perf_counter() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)

    mean = {key: float(np.mean([r[key] for r in rows])) for key in ("frozen", "fine_tuned", "average_of_both")}
    mean.update({f"weight_average {s}": float(np.mean([r["weight_average"][s] for r in rows])) for s in rows[0]["weight_average"]})
    print(f"{args.name}: folds {args.folds}: frozen {100 * mean['frozen']:.1f} %, fine-tuned {100 * mean['fine_tuned']:.1f} %,"
          f" average of both {100 * mean['average_of_both']:.1f} %"
          + "".join(f", {k} {100 * v:.1f} %" for k, v in mean.items() if k.startswith("weight_average")))
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results[args.name] = {"config": {k: v for k, v in dataclasses.asdict(config).items() if k.startswith("fine_tune")
                                     or k in ("augment", "multi_level", "batch_size", "seed")},
                          "augmentation": {"zoom": augmentation.ZOOM, "rotation_turns": augmentation.ROTATION / (2 * np.pi)},
                          "folds": rows, "mean": mean}
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
