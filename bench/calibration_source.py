"""Benchmark: what ``--quantize uint8`` should calibrate a retrained classifier on (issue 16).

    .venv/bin/python bench/calibration_source.py CLASSIFIER DATA [--unseen 300] [--seeds 0 1 2] [--json FILE]

``CLASSIFIER``: a ``transferjs retrain`` output (e.g. ``make demo``'s ``demo-out/classifier``);
``DATA``: the class folders it was retrained on (``demo-out/emoji-data``). The classifier is exported
as float32 and twice as uint8: calibrated on the 20 photo crops (the default) and on its training
images (``--calibration-images DATA``: 64 of them, one uint8 bundle per ``--seeds`` choice; the
export's own choice is seed ``calibration.SEED``, 0). Each bundle runs in TF.js (Node.js, wasm)
on two sets:

- *unseen*: ``--unseen`` emoji PNGs of emoji-datasource-google from the categories the demo does
  not train on (People & Body, Smileys & Emotion, Symbols, Flags): images the classifier never
  trained on, and neither calibration saw;
- *training, not calibrated on*: up to ``--unseen`` of DATA's images, none of any seed's 64 calibration images.

Reported per calibration: top-1 agreement with the float32 bundle (all / decisive: float32's
top-1/top-2 margin above the uint8 rule's ``decisive_margin``), max and mean probability change,
export seconds.
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
UNSEEN_CATEGORIES = ("People & Body", "Smileys & Emotion", "Symbols", "Flags")


def unseen_emoji(n: int) -> list[Path]:
    """Every k-th emoji PNG of the categories the demo's dataset leaves out, ``n`` of them."""
    from fixtures.emoji_dataset import PACKAGE

    entries = json.loads((PACKAGE / "emoji.json").read_text())
    files = sorted(PACKAGE / "img" / "google" / "64" / e["image"] for e in entries
                   if e.get("category") in UNSEEN_CATEGORIES and e.get("has_img_google"))
    files = [f for f in files if f.is_file()]
    return files[:: max(1, len(files) // n)][:n]


def chosen(files: list[Path], seed: int) -> list[Path]:
    """``calibration.choose_calibration_images`` with another seed (the module's ``SEED`` swapped for the call)."""
    import converter.calibration as calibration

    kept, calibration.SEED = calibration.SEED, seed
    try:
        return calibration.choose_calibration_images(files)
    finally:
        calibration.SEED = kept


def not_calibrated_on(data: Path, n: int, seeds) -> list[Path]:
    """Up to ``n`` of ``data``'s images (every k-th) that no seed's choice of calibration images holds."""
    from converter.calibration import find_calibration_images

    files = find_calibration_images([data])
    used = {f for seed in seeds for f in chosen(files, seed)}
    rest = [f for f in files if f not in used]
    return rest[:: max(1, len(rest) // n)][:n]


def probabilities(bundle: Path, x: np.ndarray, name: str, output: str) -> np.ndarray:
    from converter.runtimes.tfjs_node import run_bundle

    runs = run_bundle(bundle, [{name: x[i : i + 32]} for i in range(0, len(x), 32)], backend="wasm").samples
    return np.concatenate([r[output] for r in runs]).astype(np.float64)


def rows(ref: np.ndarray, probs: dict[str, np.ndarray]) -> dict[str, dict]:
    from converter.verify.tolerance import TOLERANCES, decisive_margin

    top2 = np.sort(ref, -1)[:, -2:]
    decisive = top2[:, 1] - top2[:, 0] > decisive_margin(TOLERANCES["uint8"])
    out = {}
    for name, p in probs.items():
        same = p.argmax(-1) == ref.argmax(-1)
        out[name] = {"top1_agreement": float(same.mean()), "flips": int((~same).sum()), "images": len(same),
                     "decisive": int(decisive.sum()),
                     "top1_agreement_decisive": float(same[decisive].mean()) if decisive.any() else None,
                     "max_prob_diff": float(np.abs(p - ref).max()), "mean_prob_diff": float(np.abs(p - ref).mean())}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("classifier", type=Path)
    p.add_argument("data", type=Path)
    p.add_argument("--unseen", type=int, default=300, help="images per evaluation set")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="choices of the 64 training images (default 0)")
    p.add_argument("--json", default=str(ROOT / "bench" / "results" / "calibration_source.json"))
    args = p.parse_args(argv)

    from converter.api import export
    from converter.calibration import find_calibration_images
    from converter.export.tfjs import ExportOptions
    from converter.images import load_rgb, preprocess
    from converter.model import ConvertedModel
    from transferjs.console import configure

    configure()
    model = ConvertedModel.load(args.classifier)
    (inp,), (out,) = model.inputs, model.outputs
    sets = {"unseen": unseen_emoji(args.unseen),
            "training, not calibrated on": not_calibrated_on(args.data, args.unseen, args.seeds)}
    options = {"float32": ExportOptions(), "uint8, photo crops": ExportOptions(quantize="uint8")}
    for seed in args.seeds:  # the 64 images of that seed, given as files (the export keeps all 64)
        files = tuple(str(f) for f in chosen(find_calibration_images([args.data]), seed))
        options["uint8, training images" + (f" (seed {seed})" if seed else "")] = ExportOptions(
            quantize="uint8", calibration_images=files)
    result = {"classifier": str(args.classifier), "data": str(args.data), "export_s": {}, "sets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        bundles = {}
        for name, option in options.items():
            t0 = time.perf_counter()
            bundles[name] = export(args.classifier, Path(tmp) / name.replace(" ", "_").replace(",", ""), option,
                                   verify=False).bundle
            result["export_s"][name] = round(time.perf_counter() - t0, 1)
        for set_name, files in sets.items():
            x = preprocess([load_rgb(f) for f in files], model.preprocessing, inp.layout)
            probs = {name: probabilities(b, x, inp.name, out.name) for name, b in bundles.items()}
            ref = probs.pop("float32")
            result["sets"][set_name] = rows(ref, probs)
    for set_name, table in result["sets"].items():
        print(f"\n{set_name}:")
        for name, r in table.items():
            print(f"  {name:<24} top-1 {r['top1_agreement']:.1%} ({r['flips']} flips of {r['images']}; decisive "
                  f"{r['top1_agreement_decisive'] or 0:.1%} of {r['decisive']}), max Δp {r['max_prob_diff']:.4f}, "
                  f"mean Δp {r['mean_prob_diff']:.5f}")
    print("export s:", result["export_s"])
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
