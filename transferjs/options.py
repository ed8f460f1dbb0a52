"""The ``transferjs`` command line: subcommands, options and their checks (ranges refused at parse time).

Example:
    >>> args = build_parser().parse_args(["convert", "model.onnx", "-o", "out/"])
    >>> args.command, args.samples
    ('convert', 3)
"""

from __future__ import annotations

import argparse
import math
import textwrap


EPILOG = {
    "main": """\
        examples:
          transferjs convert model.onnx -o out/
          transferjs convert resnet.pt2 -o out/ --quantize uint8
          transferjs export out/ -o bundle/ --quantize float16
          transferjs verify out/
        """,
    "convert": """\
        examples:
          transferjs convert mobilenet.onnx -o out/
          transferjs convert model.pt2 -o out/ --overwrite
          transferjs convert classifier.keras -o out/
          transferjs convert weights.pt -o out/ --model-factory mypkg.nets:Net \\
              --model-kwargs '{"classes": 10}' --input-shape image:1,3,224,224
          transferjs convert ocr.onnx -o out/ --input-shape x:-1,3,48,320

        writes out/saved_model/, out/tfjs/ (model.json + shards), out/spec.json, out/report.json
        """,
    "export": """\
        example:
          transferjs export out/ -o bundle-uint8/ --quantize uint8
          transferjs export out/ -o bundle-raw/ --bake-preprocessing   # JS passes raw pixels, any size
        """,
    "predict": """\
        example:
          transferjs predict out/tfjs cat.jpg dog.png --top 3
        """,
    "serve": """\
        example:
          transferjs serve out/tfjs --port 8000     # then open http://127.0.0.1:8000/
          transferjs serve out/pets/tfjs-transfer   # the page that teaches new classes

        sends COOP/COEP headers (cross-origin isolated: TF.js wasm uses threads) and application/wasm
        """,
    "retrain": """\
        example:
          transferjs retrain out/effnet --data photos/ -o out/pets     # photos/<class>/<images>
          transferjs retrain out/effnet --data photos/ -o out/pets --fine-tune 8 --resume

        writes out/pets/saved_model (image in, probabilities out), out/pets/tfjs (bundle with labels),
        out/pets/tfjs-transfer (backbone graph model + head layers model + retrain_head.mjs, to add
        classes in Node.js), out/pets/report.json and report.html (held-out test metrics)
        """,
    "inspect": """\
        example:
          transferjs inspect out/effnet
        """,
    "passes": """\
        example:
          transferjs passes
          transferjs convert model.onnx -o out/ --disable-pass squeeze_pooled_flatten
        """,
    "verify": """\
        example:
          transferjs verify out/            # SavedModel vs TF.js (Node.js, wasm) on 3 samples
          transferjs verify bundle-uint8/ --model-dir out/
        """,
}


def _shape_arg(text: str) -> tuple[str, list[int]]:
    name, sep, dims = text.rpartition(":")
    try:
        values = [int(d) for d in dims.split(",")]
    except ValueError:
        values = None
    if not sep or not name or not values:
        raise argparse.ArgumentTypeError(f"expected NAME:D0,D1,… (e.g. image:1,3,224,224). Received: '{text}'")
    bad = [f"D{i}={d}" for i, d in enumerate(values) if d < 1 and not (i == 0 and d == -1)]
    if bad:
        raise argparse.ArgumentTypeError(f"every dimension must be an integer ≥ 1 (D0, the batch, may be -1: dynamic); "
                                         f"{', '.join(bad)} in '{text}'")
    return name, values


def _range_words(low, high, low_open: bool, high_open: bool) -> str:
    low, high = (v if v is None or isinstance(v, int) else f"{v:g}" for v in (low, high))
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '≥'} {low}"
    return f"{'<' if high_open else '≤'} {high}" if high is not None else "finite"


def _in_range(value, low, high, low_open: bool, high_open: bool) -> bool:
    return math.isfinite(value) and not (
        low is not None and (value < low or (low_open and value == low))
        or high is not None and (value > high or (high_open and value == high)))


def number(kind=float, low=None, high=None, low_open: bool = False, high_open: bool = False, count: int = 0):
    """An argparse ``type``: an int or float (``count`` > 0: that many, comma-separated) in a range.

    A value out of range is refused at parse time (exit 2), the range in the message.

    Example:
        >>> number(int, 1)("3")
        3
    """
    what = "an integer" if kind is int else "a number"
    words = _range_words(low, high, low_open, high_open)

    def parse(text: str):
        try:
            values = [kind(v) for v in text.split(",")] if count else [kind(text)]
        except ValueError:
            values = None
        if values is None or (count and len(values) != count):
            raise argparse.ArgumentTypeError(f"expected {f'{count} comma-separated numbers, each' if count else what} "
                                             f"{words}. Received: '{text}'")
        bad = [v for v in values if not _in_range(v, low, high, low_open, high_open)]
        if bad:
            raise argparse.ArgumentTypeError(f"must be {words}. Received: '{text}'")
        return tuple(values) if count else values[0]

    parse.__name__ = what
    return parse


POSITIVE_INT = number(int, 1)
POSITIVE = number(float, 0, low_open=True)
NON_NEGATIVE = number(float, 0)


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    top = argparse.ArgumentParser(add_help=False)
    top.add_argument("-v", "--verbose", action="store_true", help="show framework logs and tracebacks")
    # A subcommand's -v must not reset one given before the subcommand to False.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show framework logs and tracebacks")
    p = argparse.ArgumentParser(
        prog="transferjs",
        description="Convert PyTorch, Keras and ONNX models to a verified TensorFlow graph and TF.js bundles.",
        epilog=textwrap.dedent(EPILOG["main"]),
        formatter_class=fmt,
        parents=[top],
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("convert", help="convert a model; check it against the source in TF and TF.js",
                       epilog=textwrap.dedent(EPILOG["convert"]), formatter_class=fmt, parents=[common])
    c.add_argument("src", help="model: .onnx; PyTorch .pt2, TorchScript or state dict; Keras .keras/.h5; SavedModel folder")
    c.add_argument("-o", "--out", required=True, help="output folder (created atomically)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    c.add_argument("--input-shape", action="append", type=_shape_arg, default=[], metavar="NAME:D0,D1,…",
                   help="static input shape (-1 keeps the batch dynamic); repeat per input")
    c.add_argument("--batch", choices=["auto", "dynamic", "static"], default="auto", help="batch dimension (default: as the source)")
    c.add_argument("--keep-layout", action="store_true", help="keep NCHW image tensors (default: NHWC, as TF.js images are)")
    c.add_argument("--no-verify", action="store_true", help="skip the parity checks")
    c.add_argument("--sample", metavar="FILE.npz", help="your own input sample, compared too")
    c.add_argument("--samples", type=number(int, 1, 1000), default=3, help="seeded random samples to compare (default 3)")
    c.add_argument("--atol", type=NON_NEGATIVE, default=1e-4, help="absolute tolerance (default 1e-4)")
    c.add_argument("--rtol", type=NON_NEGATIVE, default=1e-3, help="relative tolerance (default 1e-3)")
    c.add_argument("--trust-code", action="store_true", help="allow files that run code when loaded (full pickles)")
    c.add_argument("--model-factory", metavar="PKG.MODULE:NAME", help="code that builds the module for a state dict")
    c.add_argument("--model-kwargs", metavar="JSON", help="keyword arguments for --model-factory")
    c.add_argument("--labels", metavar="FILE", help="class names, one per line (or a JSON list), for metadata.json")
    _preprocessing_args(c, "the input's static size; pixels scaled to [0, 1]")
    c.add_argument("--custom-objects", action="append", default=[], metavar="PKG.MODULE:NAME",
                   help="custom Keras class the model needs (with --trust-code); repeat per class")
    _export_args(c)

    e = sub.add_parser("export", help="write a TF.js bundle for a converted model",
                       epilog=textwrap.dedent(EPILOG["export"]), formatter_class=fmt, parents=[common])
    e.add_argument("model_dir", help="a folder written by 'transferjs convert'")
    e.add_argument("-o", "--out", required=True, help="bundle folder")
    e.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    e.add_argument("--no-verify", action="store_true", help="skip running the bundle in TF.js")
    e.add_argument("--bake-preprocessing", action="store_true", help="the graph resizes and normalizes: pass raw 0-255 pixels of any size")
    e.add_argument("--sample", metavar="FILE.npz", help="real inputs to compare on too")
    _export_args(e)

    pr = sub.add_parser("predict", help="classify images with a TF.js bundle in Node.js (its predict.mjs)",
                        epilog=textwrap.dedent(EPILOG["predict"]), formatter_class=fmt, parents=[common])
    pr.add_argument("bundle", help="a TF.js bundle folder (e.g. out/tfjs)")
    pr.add_argument("images", nargs="+", help="PNG or JPEG files")
    pr.add_argument("--top", type=number(int, 1, 1000), default=5, help="labels shown per image (default 5)")
    pr.add_argument("--backend", choices=["wasm", "cpu"], default="wasm")

    sv = sub.add_parser("serve", help="serve a bundle's page locally, cross-origin isolated (its serve.mjs)",
                        epilog=textwrap.dedent(EPILOG["serve"]), formatter_class=fmt, parents=[common])
    sv.add_argument("bundle", help="a TF.js bundle folder (e.g. out/tfjs) or a tfjs-transfer folder")
    sv.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")

    r = sub.add_parser("retrain", help="teach a converted model your classes: a new head on its features, optional fine-tuning",
                       epilog=textwrap.dedent(EPILOG["retrain"]), formatter_class=fmt, parents=[common])
    r.add_argument("model_dir", help="a folder written by 'transferjs convert'")
    data = r.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", help="folder of class sub-folders (or train/val/test/<class>)")
    data.add_argument("--data-csv", metavar="FILE", help="CSV of path,label rows (paths relative to the file)")
    r.add_argument("-o", "--out", required=True, help="output folder (created atomically)")
    r.add_argument("--overwrite", action="store_true")
    r.add_argument("--allow-outside", action="store_true",
                   help="let --data-csv name images outside the CSV's folder (refused by default)")
    r.add_argument("--test-split", type=number(float, 0, 1, True, True), default=0.15,
                   help="held-out fraction when the data set is too large for k-fold cross-validation")
    r.add_argument("--folds", type=number(int, 2, 100), default=5, help="k of the cross-validation that chooses settings and scores them")
    r.add_argument("--no-refit", action="store_true",
                   help="export the model evaluated without its held-out images instead of refitting on all")
    r.add_argument("--no-multi-level", action="store_true",
                   help="only the backbone's features; by default the pooled outputs of its last 3 stages are "
                        "added when that wins on held-out folds")
    r.add_argument("--l2", type=NON_NEGATIVE, help="the linear head's L2 strength (default: chosen by cross-validation)")
    r.add_argument("--epochs", type=POSITIVE_INT, default=100, help="maximum epochs of the --hidden head (early stopping)")
    r.add_argument("--learning-rate", type=POSITIVE, default=1e-3)
    r.add_argument("--batch-size", type=number(int, 1, 65536), default=32)
    r.add_argument("--patience", type=POSITIVE_INT, default=10, help="--hidden head epochs without improvement before stopping")
    r.add_argument("--fine-tune", type=number(int, 0), default=0, metavar="N",
                   help="phase 2: also train the backbone's last N weight layers (convolutions/dense), on augmented images")
    r.add_argument("--fine-tune-epochs", type=POSITIVE_INT, default=3, help="fixed budget (warm-up, cosine decay)")
    r.add_argument("--fine-tune-learning-rate", type=POSITIVE, default=3e-4, help="peak learning rate")
    r.add_argument("--fine-tune-layer-decay", type=POSITIVE, default=1.0,
                   help="each backbone layer further down trains at this times the rate of the one above (e.g. 0.9)")
    r.add_argument("--fine-tune-mixup", type=NON_NEGATIVE, default=0.0, metavar="A",
                   help="phase 2 mixup: blend each image and its target with another training image's, Beta(A, A) (0: off)")
    r.add_argument("--fine-tune-weight-average", type=number(float, 0, 1, low_open=True), default=0.5, metavar="SHARE",
                   help="deliver SHARE x the fine-tuned weights + (1 - SHARE) x the starting ones (WiSE-FT; default 0.5; 1: as trained)")
    r.add_argument("--no-augment", action="store_true", help="no random flip/rotation/zoom/brightness/contrast in phase 2")
    r.add_argument("--resume", action="store_true", help="continue an interrupted run (same settings) from its last checkpoint")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    _preprocessing_args(r, "as the converted model's metadata says")
    r.add_argument("--hidden", type=number(int, 0, 1 << 16), default=0,
                   help="units of a hidden-layer head that competes with the linear one on held-out folds")
    r.add_argument("--label-smoothing", type=number(float, 0, 1, high_open=True), default=0.0)
    r.add_argument("--seed", type=number(int, 0, 2**32 - 1), default=0)
    r.add_argument("--feature-node", help="backbone tensor to take features from (see 'transferjs inspect')")
    r.add_argument("--cache-dir", help="feature cache (default ~/.cache/transferjs/features)")
    r.add_argument("--no-baseline", action="store_true", help="skip the raw-pixel baseline")
    r.add_argument("--workers", type=number(int, 1, 64), metavar="N",
                   help="run as N local worker processes (127.0.0.1, free ports): features extracted in shards, "
                        "the head and --fine-tune trained data-parallel, the same result as one worker; "
                        "on a cluster set TF_CONFIG on each machine instead (README)")

    i = sub.add_parser("inspect", help="list a converted model's inputs, outputs and candidate feature nodes",
                       epilog=textwrap.dedent(EPILOG["inspect"]), formatter_class=fmt, parents=[common])
    i.add_argument("model_dir", help="a folder written by 'transferjs convert'")

    sub.add_parser("passes", help="list the graph passes convert and export run, in order",
                   epilog=textwrap.dedent(EPILOG["passes"]), formatter_class=fmt, parents=[common])

    v = sub.add_parser("verify", help="run a converted model in TensorFlow and TF.js (Node.js) and compare",
                       epilog=textwrap.dedent(EPILOG["verify"]), formatter_class=fmt, parents=[common])
    v.add_argument("path", help="a folder written by 'transferjs convert', or a TF.js bundle inside one")
    v.add_argument("--bundle", help="TF.js bundle to check (default: MODEL_DIR/tfjs)")
    v.add_argument("--model-dir", help="the converted model a bundle came from (default: the bundle's parent)")
    v.add_argument("--backend", choices=["wasm", "cpu"], default="wasm")
    v.add_argument("--samples", type=number(int, 1, 1000), default=3)
    return p


def _preprocessing_args(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--image-size", metavar="H,W", type=number(int, 1, 8192, count=2),
                   help=f"resize images to this size (default: {default})")
    p.add_argument("--mean", metavar="R,G,B", type=number(float, count=3),
                   help="per-channel mean subtracted after scaling (e.g. 0.485,0.456,0.406)")
    p.add_argument("--std", metavar="R,G,B", type=number(float, 0, low_open=True, count=3),
                   help="per-channel std divided by after the mean (e.g. 0.229,0.224,0.225)")
    p.add_argument("--scale", type=POSITIVE, help="pixel scale before mean/std (default 1/255)")


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quantize", choices=["float16", "uint8", "uint8-per-tensor", "uint16"],
                   help="quantize weights in the TF.js bundle (uint8: kernels 8-bit per output channel, the rest "
                        "float16; uint8-per-tensor: tensorflowjs' one 8-bit range per tensor)")
    p.add_argument("--restore-at-load", action="store_true",
                   help="uint8 only: restore the per-channel kernels once, at the first run, not per run (the graph "
                        "that runs is the float32 one); the first predict must then be outside tf.tidy")
    p.add_argument("--calibration-images", action="append", default=[], metavar="PATH",
                   help="with --quantize uint8: calibrate its rounding on these images (a folder, searched "
                        "recursively, or files; repeatable; at most 64, a seeded choice) instead of photo crops, "
                        "e.g. the images the model was retrained on")
    p.add_argument("--quantize-weights", action="append", default=[], metavar="PATTERN",
                   help="quantize only weights whose names match this glob (repeatable; default: all)")
    p.add_argument("--shard-size", type=number(int, 1024, 2**31 - 1), default=4 * 1024 * 1024, metavar="BYTES",
                   help="weight shard size (default 4 MiB)")
    p.add_argument("--signature", default="serving_default", help="SavedModel signature to export")
    p.add_argument("--disable-pass", action="append", default=[], metavar="NAME",
                   help="skip this graph pass (repeatable; 'transferjs passes' lists them)")
