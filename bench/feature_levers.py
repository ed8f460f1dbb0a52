"""Study (issue 15): cheap levers on frozen features, scored like the demo's frozen head.

    .venv/bin/python bench/feature_levers.py                     # extract (cached in --work), then the table
    .venv/bin/python bench/feature_levers.py --work /tmp/levers --only base,multi_level

Features come from the PyTorch EfficientNet-Lite0 with its shipped ImageNet weights (the model the demo
converts; parity torch -> TensorFlow is ~1e-5, so the same features as the converted graph's). Images
are the demo's 857 emoji (``fixtures/emoji_dataset.py``), resized like ``converter.images.resize``
(bilinear, half-pixel centres, no antialiasing) and normalized to [-1, 1]. Every lever is scored by
``retrain.evaluation.held_out_heads`` on ``retrain``'s own 5-fold plan (``plan_evaluation``, seed 0):
each image predicted by an L2 softmax regression trained without its fold, its strength chosen by
3-fold CV on the training folds only -- the number ``make demo`` prints as "frozen features".

Levers: (a) multi-level features (global-average-pooled outputs of the last stages concatenated with
the 1280-d pooled features); (b) test-time flips / framing (white padding) averaged; (c) input
resolution; (d) pooling (max, avg+max) and the ImageNet logits as extra features.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ("s1", "s2", "s3", "s4", "s5", "s6", "s7")  # MBConv stage outputs: 16, 24, 40, 80, 112, 192, 320 channels
# (name, resolution, white padding on each side of the 64x64 art in its own pixels, mirrored)
VIEWS = (("224", 224, 0, False), ("224-flip", 224, 0, True), ("256", 256, 0, False), ("288", 288, 0, False),
         ("320", 320, 0, False), ("224-pad8", 224, 8, False), ("224-pad16", 224, 16, False),
         ("288-flip", 288, 0, True))


def load_model():
    """The ImageNet EfficientNet-Lite0 (eval mode) and the indices of its blocks that end a stage."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from transferjs.demo import efficientnet_lite0_weights

    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(efficientnet_lite0_weights(), map_location="cpu"))
    model.eval()
    ends, blocks = [], list(model._blocks)
    for i, block in enumerate(blocks):
        last = i == len(blocks) - 1
        if last or blocks[i + 1]._block_args.output_filters != block._block_args.output_filters:
            ends.append(i)
    assert len(ends) == len(STAGES), ends
    return model, ends


def pixels(path: Path, pad: int, flip: bool) -> np.ndarray:
    """uint8 (H, W, 3), padded with white and mirrored as asked."""
    from PIL import Image

    img = np.asarray(Image.open(path).convert("RGB"))
    if pad:
        img = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), constant_values=255)
    return img[:, ::-1].copy() if flip else img


def view_features(model, ends, paths, size: int, pad: int, flip: bool, batch: int = 32) -> dict:
    """Per image: each stage's global-average-pooled output, the 1280-d avg and max pools, the logits."""
    import torch
    import torch.nn.functional as F

    out = {k: [] for k in (*STAGES, "avg", "max", "logits")}
    with torch.no_grad():
        for start in range(0, len(paths), batch):
            imgs = np.stack([pixels(p, pad, flip) for p in paths[start:start + batch]]).astype(np.float32)
            x = torch.from_numpy(imgs).permute(0, 3, 1, 2)
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
            x = (x / 255 - 0.5) / 0.5
            h = model._swish(model._bn0(model._conv_stem(x)))
            for i, block in enumerate(model._blocks):
                h = block(h)
                if i in ends:
                    out[STAGES[ends.index(i)]].append(h.mean((2, 3)).numpy())
            h = model._swish(model._bn1(model._conv_head(h)))
            avg = h.mean((2, 3))
            out["avg"].append(avg.numpy())
            out["max"].append(h.amax((2, 3)).numpy())
            out["logits"].append(model._fc(avg).numpy())
    return {k: np.concatenate(v).astype(np.float32) for k, v in out.items()}


def extract(work: Path, paths: list, views=VIEWS) -> dict:
    """``{view name: view_features}``, each cached as ``work/features-<view>.npz``."""
    import torch

    torch.set_num_threads(2)
    model, ends = None, None
    result = {}
    for name, size, pad, flip in views:
        file = work / f"features-{name}.npz"
        if not file.exists():
            if model is None:
                model, ends = load_model()
            t = time.perf_counter()
            np.savez(file, **view_features(model, ends, paths, size, pad, flip))
            print(f"features {name}: {time.perf_counter() - t:.0f} s", flush=True)
        result[name] = dict(np.load(file))
    return result


def levers(f: dict) -> dict:
    """``{lever name: (N, dim) features}``."""
    cat = np.concatenate
    base = f["224"]
    rows = {
        "base: 1280-d avg pool, 224": base["avg"],
        "(a) + stage 7 (320)": cat([base["avg"], base["s7"]], 1),
        "(a) + stages 6-7 (192+320)": cat([base["avg"], base["s6"], base["s7"]], 1),
        "(a) + stages 5-7 (112+192+320)": cat([base["avg"], base["s5"], base["s6"], base["s7"]], 1),
        "(a) + stages 4-7 (80+...+320)": cat([base["avg"], base["s4"], base["s5"], base["s6"], base["s7"]], 1),
        "(b) flip-averaged": (base["avg"] + f["224-flip"]["avg"]) / 2,
        "(b) pad 8 px white": f["224-pad8"]["avg"],
        "(b) pad 16 px white": f["224-pad16"]["avg"],
        "(b) avg of orig + pad 8 + pad 16": (base["avg"] + f["224-pad8"]["avg"] + f["224-pad16"]["avg"]) / 3,
        "(c) 256": f["256"]["avg"],
        "(c) 288": f["288"]["avg"],
        "(c) 320": f["320"]["avg"],
        "(c) 288 flip-averaged": (f["288"]["avg"] + f["288-flip"]["avg"]) / 2,
        "(c)+(a) 288 + stages 5-7": cat([f["288"]["avg"], f["288"]["s5"], f["288"]["s6"], f["288"]["s7"]], 1),
        "(c) 224+288 concatenated": cat([base["avg"], f["288"]["avg"]], 1),
        "(d) max pool": base["max"],
        "(d) avg + max pool": cat([base["avg"], base["max"]], 1),
        "(d) + ImageNet logits": cat([base["avg"], base["logits"]], 1),
        "(d) signed sqrt of features": np.sign(base["avg"]) * np.sqrt(np.abs(base["avg"])),
    }
    return rows


def score(x: np.ndarray, y: np.ndarray, plan, config) -> dict:
    """The demo's frozen-head number for features ``x``: mean and per-fold held-out accuracy."""
    from retrain.evaluation import held_out_heads

    held = held_out_heads(x, y, int(y.max()) + 1, plan, config, log=lambda m: None)
    pred = held["probabilities"].argmax(1)
    return {"mean": held["accuracy"], "folds": [float((pred[f] == y[f]).mean()) for f in plan.folds], "dim": x.shape[1]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/feature-levers"))
    ap.add_argument("--only", default="", help="comma-separated substrings of lever names")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "feature_levers.json")
    args = ap.parse_args(argv)

    from fixtures.emoji_dataset import build_emoji_dataset
    from retrain.data import scan_folder
    from retrain.evaluation import plan_evaluation
    from retrain.train import TrainConfig

    args.work.mkdir(parents=True, exist_ok=True)
    if not (args.work / "emoji").is_dir():
        build_emoji_dataset(args.work / "emoji")
    dataset = scan_folder(args.work / "emoji")
    paths = [p for p, _ in dataset.items]
    y = np.array([label for _, label in dataset.items], int)
    config = TrainConfig()
    plan = plan_evaluation(y, config)
    feats = extract(args.work, paths)
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    wanted = [w for w in args.only.split(",") if w]
    print("| lever | dim | 5-fold mean | per fold |\n|---|---:|---:|---|")
    for name, x in levers(feats).items():
        if wanted and not any(w in name for w in wanted):
            continue
        t = time.perf_counter()
        r = score(x, y, plan, config)
        r["seconds"] = round(time.perf_counter() - t, 1)
        results[name] = r
        folds = ", ".join(f"{a * 100:.1f}" for a in r["folds"])
        print(f"| {name} | {r['dim']} | {r['mean'] * 100:.1f} % | {folds} |", flush=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
