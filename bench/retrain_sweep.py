"""Benchmark: transfer learning vs baselines on real images, at 10 and 30 images per class and all.

    .venv/bin/python bench/retrain_sweep.py --explore-only         # choose fine-tune settings (validation only)
    .venv/bin/python bench/retrain_sweep.py --fine-tune 16 --fine-tune-lr 1e-4 --fine-tune-epochs 3 --draws 3 --scratch-epochs 60
    .venv/bin/python bench/retrain_sweep.py --quick                # 10 per class only, a few minutes

Data: the emoji artwork of the npm package emoji-datasource-google, five categories
(fixtures/emoji_dataset.py; 857 images, 64x64 on white). One stratified, seeded split
(70 / 15 / 15 %) is made once; its validation and test images are the same for every row.
Only the training images are subsampled (N per class, first N of a seeded permutation of
each class). The test split is never used to choose anything.

Per row, on the same held-out test images:
- frozen: ``retrain.retrain`` phase 1 (ImageNet EfficientNet-Lite0 features, converted from
  PyTorch by transferjs, 224x224; new head);
- fine-tuned: phase 2 (the last N weight layers with the head, augmentation), its test
  accuracy whether or not retrain keeps it (it keeps it only when validation loss improves);
- from scratch: the same EfficientNet-Lite0 architecture, random init, trained in PyTorch at
  the emoji's native 64x64 (to keep it affordable on 2 CPUs), augmentation, Adam, a fixed
  epoch budget, best epoch by validation loss;
- raw pixels: retrain's softmax regression on 32x32 pixels.

``--explore-only`` trains phase 1 and then phase 2 with several (N, learning rate) settings on
the "all images" training split and compares them on the validation split only.
Results are merged into ``--json`` (``explore``, ``sweep`` or ``quick`` keys).
"""

from __future__ import annotations

import dataclasses

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLASSES = 5


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpus": os.cpu_count(), "cpu": cpu, "load_average": os.getloadavg(), "python": platform.python_version()}


# --- data ---------------------------------------------------------------------------------------

def fixed_split(work: Path, seed: int) -> dict:
    """Build the emoji dataset once and split it; returns labels and {split: [(path, label)]}."""
    from fixtures.emoji_dataset import build_emoji_dataset
    from retrain.data import scan_folder, split

    build_emoji_dataset(work / "emoji")
    data = scan_folder(work / "emoji")
    parts = split(data, 0.15, 0.15, seed)
    return {"labels": data.labels, **{k: [data.items[i] for i in v] for k, v in parts.items()}}


def subsample(items: list, per_class: int | None, seed: int) -> list:
    """The first ``per_class`` images of each class in a seeded permutation (all when None)."""
    if per_class is None:
        return list(items)
    rng = np.random.default_rng(seed)
    out = []
    for c in range(CLASSES):
        mine = [it for it in items if it[1] == c]
        out += [mine[i] for i in rng.permutation(len(mine))[:per_class]]
    return out


def write_layout(folder: Path, labels: list[str], parts: dict) -> Path:
    """``folder/{train,val,test}/<class>/*.png``: retrain takes these splits as given."""
    for name, items in parts.items():
        for path, label in items:
            dest = folder / name / labels[label]
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, dest / Path(path).name)
    return folder


# --- exploration (validation split only) ---------------------------------------------------------

def explore(model_dir: Path, split: dict, cache_dir: Path, layers: list[int], rates: list[float], epochs: int,
            log=print) -> dict:
    """Phase 1, then phase 2 for each N at rates[0]; the best N again at the other rates. Validation only."""
    from converter.model import ConvertedModel
    from retrain import TrainConfig
    from retrain.api import _preprocessing
    from retrain.features import FeatureExtractor, cached_features
    from retrain.finetune import fine_tune
    from retrain.train import train_head

    model = ConvertedModel.load(model_dir)
    model = dataclasses.replace(model, preprocessing=_preprocessing(model))
    fx = FeatureExtractor(model)
    train, val = split["train"], split["val"]
    feats, _, _ = cached_features(fx, [p for p, _ in train + val], cache_dir)
    y = np.array([label for _, label in train + val])
    n = len(train)

    def one(layers_n: int, rate: float) -> dict:
        config = TrainConfig(fine_tune=layers_n, fine_tune_learning_rate=rate, fine_tune_epochs=epochs,
                             seed=0)
        head, h1 = train_head(feats[:n], y[:n], feats[n:], y[n:], CLASSES, config, progress=False, log=log)
        t = time.perf_counter()
        h2 = fine_tune(fx.trainable(layers_n), head, fx, train, val, CLASSES, config, progress=False, log=log)["history"]
        best = h2["best_epoch"] - 1
        row = {"fine_tune": layers_n, "learning_rate": rate, "epochs": epochs,
               "parameters": h2["trainable_parameters"], "seconds": round(time.perf_counter() - t, 1),
               "frozen_val_loss": h1["best_val_loss"], "frozen_val_accuracy": h1["val_accuracy"][h1["best_epoch"] - 1],
               "val_loss": h2["val_loss"], "val_accuracy": h2["val_accuracy"], "train_loss": h2["loss"],
               "best_epoch": h2["best_epoch"], "best_val_loss": h2["best_val_loss"],
               "best_val_accuracy": h2["val_accuracy"][best] if h2["val_loss"] else None}
        log(f"explore N={layers_n} lr={rate:g}: val_loss {['%.4f' % v for v in h2['val_loss']]} "
            f"val_acc {['%.3f' % v for v in h2['val_accuracy']]} (frozen {row['frozen_val_loss']:.4f} / "
            f"{row['frozen_val_accuracy']:.3f}) {row['seconds']:.0f} s")
        return row

    rows = [one(k, rates[0]) for k in layers]
    best = min(rows, key=lambda r: r["best_val_loss"])
    rows += [one(best["fine_tune"], r) for r in rates[1:]]
    chosen = min(rows, key=lambda r: r["best_val_loss"])
    return {"train_images": n, "val_images": len(val), "runs": rows,
            "chosen": {"fine_tune": chosen["fine_tune"], "learning_rate": chosen["learning_rate"],
                       "epochs": chosen["best_epoch"], "by": "lowest validation loss"}}


# --- from scratch (PyTorch) ----------------------------------------------------------------------

def _images64(items: list) -> np.ndarray:
    from converter.images import load_rgb, resize

    return np.stack([resize(load_rgb(p), (64, 64)) for p, _ in items]).astype(np.float32) / 255.0


def _augment(x, generator):
    """Flip, rotation (+-18 deg), zoom (+-10 %), brightness and contrast (+-10 %), as retrain's phase 2."""
    import math

    import torch
    import torch.nn.functional as F

    b = x.shape[0]

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(b, generator=generator)

    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    angle, zoom = uniform(-0.05, 0.05) * 2 * math.pi, uniform(0.9, 1.1)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(b)], 1), torch.stack([sin, cos, torch.zeros(b)], 1)], 1)
    x = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), padding_mode="border",
                      align_corners=False)
    x = x + uniform(-0.1, 0.1)[:, None, None, None]
    mean = x.mean((1, 2, 3), keepdim=True)
    return ((x - mean) * uniform(0.9, 1.1)[:, None, None, None] + mean).clamp(0, 1)


def from_scratch(train: list, val: list, test: list, epochs: int, seed: int = 0, threads: int = 1,
                 batch_size: int = 32, learning_rate: float = 1e-3) -> dict:
    """EfficientNet-Lite0 (random init, 64x64) trained with Adam; test accuracy at the best validation epoch."""
    import torch
    import torch.nn.functional as F
    from efficientnet_lite_pytorch import EfficientNet

    from retrain.train import class_weights

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()

    def tensors(items):
        x = torch.from_numpy(_images64(items)).permute(0, 3, 1, 2).contiguous()
        return x, torch.tensor([label for _, label in items])

    (xt, yt), (xv, yv), (xs, ys) = tensors(train), tensors(val), tensors(test)
    model = EfficientNet.from_name("efficientnet-lite0", num_classes=CLASSES, image_size=64)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), learning_rate)
    weights = torch.from_numpy(class_weights(yt.numpy(), CLASSES))

    def norm(x):
        return ((x - 0.5) / 0.5).contiguous(memory_format=torch.channels_last)

    def probabilities(x):
        model.eval()
        with torch.no_grad():
            return torch.cat([F.softmax(model(norm(x[i:i + 128])), 1) for i in range(0, len(x), 128)])

    history, best, best_state = [], (float("inf"), 0), None
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xt), generator=generator)
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2:  # batch norm needs two samples
                continue
            loss = F.cross_entropy(model(norm(_augment(xt[idx], generator))), yt[idx], weight=weights)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        p = probabilities(xv)
        val_loss = float(F.nll_loss(torch.log(p.clamp_min(1e-7)), yv))
        history.append({"val_loss": val_loss, "val_accuracy": float((p.argmax(1) == yv).float().mean())})
        if val_loss < best[0]:
            best = (val_loss, epoch + 1)
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    accuracy = float((probabilities(xs).argmax(1) == ys).float().mean())
    return {"test_accuracy": accuracy, "best_epoch": best[1], "epochs": epochs, "history": history,
            "input_size": 64, "seconds": round(time.perf_counter() - t0, 1)}


# --- the sweep ------------------------------------------------------------------------------------

def sweep_row(model_dir: Path, work: Path, split: dict, per_class: int | None, draw: int, args, cache_dir: Path,
              log=print) -> dict:
    """One row: retrain (frozen + fine-tuned + raw pixels) and from scratch on one training subset."""
    from retrain import TrainConfig, retrain

    train = subsample(split["train"], per_class, draw)
    name = f"{per_class or 'all'}-draw{draw}"
    data = write_layout(work / f"data-{name}", split["labels"], {"train": train, "val": split["val"], "test": split["test"]})
    config = TrainConfig(fine_tune=args.fine_tune, fine_tune_learning_rate=args.fine_tune_lr,
                         fine_tune_epochs=args.fine_tune_epochs, seed=0)
    t = time.perf_counter()
    rep = retrain(model_dir, data, work / f"out-{name}", config, cache_dir=cache_dir, overwrite=True, baseline=True,
                  verify=False, progress=False, log=log).report
    retrain_seconds = time.perf_counter() - t
    ft = rep.get("fine_tune", {})
    row = {
        "per_class": per_class, "draw": draw, "train_images": len(train), "val_images": len(split["val"]),
        "test_images": len(split["test"]),
        "frozen": rep["test_frozen_features"]["accuracy"],
        "fine_tuned": ft.get("test_accuracy"), "fine_tune_kept": ft.get("kept"),
        "fine_tune_best_epoch": ft.get("history", {}).get("best_epoch"),
        "fine_tune_val_loss": ft.get("history", {}).get("val_loss"),
        "frozen_on_check_split": ft.get("frozen_on_same_images"),
        "final": rep["test"]["accuracy"], "raw_pixels": rep["baseline_raw_pixels_accuracy"],
        "retrain_seconds": round(retrain_seconds, 1), "retrain_stage_seconds": rep["seconds"],
    }
    log(f"{name}: frozen {row['frozen']:.3f} fine-tuned {row['fine_tuned']} (kept {row['fine_tune_kept']}) "
        f"raw {row['raw_pixels']:.3f} ({retrain_seconds:.0f} s)")
    if args.scratch_epochs:
        s = from_scratch(train, split["val"], split["test"], args.scratch_epochs, seed=draw, threads=args.torch_threads)
        row["scratch"], row["scratch_detail"] = s["test_accuracy"], s
        log(f"{name}: from scratch {s['test_accuracy']:.3f} (best epoch {s['best_epoch']}/{s['epochs']}, {s['seconds']:.0f} s)")
    shutil.rmtree(work / f"out-{name}", ignore_errors=True)
    shutil.rmtree(data, ignore_errors=True)
    return row


def table(rows: list[dict]) -> str:
    """Mean over draws per training size, as a Markdown table."""
    out = ["| train images / class | train images | frozen features | fine-tuned (where kept) | kept | delivered model | "
           "from scratch (64x64) | raw pixels |",
           "|---|---:|---:|---:|---|---:|---:|---:|"]
    sizes = []
    for r in rows:
        if r["per_class"] not in sizes:
            sizes.append(r["per_class"])
    for size in sizes:
        rs = [r for r in rows if r["per_class"] == size]

        def cell(key):
            vals = [r[key] for r in rs if r.get(key) is not None]
            if not vals:
                return "-"
            text = f"{100 * np.mean(vals):.1f} %"
            return text + (f" ({', '.join(f'{100 * v:.1f}' for v in vals)})" if len(vals) > 1 else "")

        kept = "/".join("yes" if r.get("fine_tune_kept") else "no" for r in rs)
        out.append(f"| {size or 'all'} | {rs[0]['train_images']} | {cell('frozen')} | {cell('fine_tuned')} | {kept} | "
                   f"{cell('final')} | {cell('scratch')} | {cell('raw_pixels')} |")
    return "\n".join(out)


def merge_json(path: Path, key: str, value) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def converted_backbone(path: Path | None, work: Path) -> Path:
    """The converted EfficientNet-Lite0 folder: ``path`` if given and present, else convert one."""
    if path is not None and (path / "spec.json").exists():
        return path
    from transferjs.demo import run

    run(work / "efficientnet-lite0")
    return work / "efficientnet-lite0"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "demo-out" / "efficientnet-lite0",
                   help="converted EfficientNet-Lite0 (converted afresh when missing)")
    p.add_argument("--quick", action="store_true", help="10 images per class, one draw, 2 fine-tune epochs, 30 scratch epochs")
    p.add_argument("--explore-only", action="store_true", help="compare fine-tune settings on the validation split")
    p.add_argument("--explore-layers", default="4,8,16")
    p.add_argument("--explore-rates", default="1e-4,3e-5", help="first: for every N; the rest: for the best N")
    p.add_argument("--explore-epochs", type=int, default=3)
    p.add_argument("--sizes", default="10,30,all", help="training images per class")
    p.add_argument("--draws", type=int, default=3, help="training subsets per size (all: always 1)")
    # Defaults: the settings --explore-only chose (BENCHMARKS.md, "Retraining (issue 6)").
    p.add_argument("--fine-tune", type=int, default=16, help="weight layers fine-tuned")
    p.add_argument("--fine-tune-lr", type=float, default=1e-4)
    p.add_argument("--fine-tune-epochs", type=int, default=3)
    p.add_argument("--scratch-epochs", type=int, default=60, help="epoch budget from scratch (0: skip)")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="PyTorch threads (1: on a loaded 2-core machine 2 OpenMP threads were ~10x slower)")
    p.add_argument("--seed", type=int, default=0, help="the train/val/test split")
    p.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "retrain_sweep.json")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.draws, args.fine_tune_epochs, args.scratch_epochs = "10", 1, 2, 30

    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="retrain-sweep-") as tmp:
        work = Path(tmp)
        model_dir = converted_backbone(args.model, work)
        split = fixed_split(work, args.seed)
        cache_dir = work / "cache"
        info = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "backbone": str(model_dir),
                "split": {k: len(split[k]) for k in ("train", "val", "test")}, "split_seed": args.seed,
                "argv": sys.argv[1:]}
        print(f"machine: {info['machine']}\nsplit: {info['split']} (labels {split['labels']})", flush=True)
        if args.explore_only:
            result = explore(model_dir, split, cache_dir, [int(v) for v in args.explore_layers.split(",")],
                             [float(v) for v in args.explore_rates.split(",")], args.explore_epochs)
            result.update(info, seconds=round(time.perf_counter() - t0, 1))
            print("\n| N layers | lr | params | val loss per epoch | val acc per epoch | frozen val loss / acc | s |")
            print("|---:|---:|---:|---|---|---|---:|")
            for r in result["runs"]:
                print(f"| {r['fine_tune']} | {r['learning_rate']:g} | {r['parameters']:,} | "
                      f"{', '.join(f'{v:.3f}' for v in r['val_loss'])} | "
                      f"{', '.join(f'{100 * v:.1f}' for v in r['val_accuracy'])} | "
                      f"{r['frozen_val_loss']:.3f} / {100 * r['frozen_val_accuracy']:.1f} | {r['seconds']:.0f} |")
            print(f"chosen: {result['chosen']}; {result['seconds']:.0f} s")
            merge_json(args.json, "explore", result)
            return 0
        rows = []
        for size in args.sizes.split(","):
            per_class = None if size == "all" else int(size)
            for draw in range(1 if per_class is None else args.draws):
                rows.append(sweep_row(model_dir, work, split, per_class, draw, args, cache_dir))
                merge_json(args.json, "quick" if args.quick else "sweep",
                           {**info, "rows": rows, "partial": True})
        settings = {"fine_tune": args.fine_tune, "fine_tune_learning_rate": args.fine_tune_lr,
                    "fine_tune_epochs": args.fine_tune_epochs, "scratch_epochs": args.scratch_epochs}
        result = {**info, "settings": settings, "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}
        print(f"\ntest accuracy on the same {info['split']['test']} held-out images "
              f"(from scratch: EfficientNet-Lite0, random init, 64x64 input, {args.scratch_epochs} epochs):")
        print(table(rows))
        print(f"settings: {settings}; {result['seconds']:.0f} s")
        merge_json(args.json, "quick" if args.quick else "sweep", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
