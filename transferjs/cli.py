"""The ``transferjs`` command: parse, call the Python API, map errors to exit codes.

The libraries import heavy frameworks only inside the functions that need them, so ``--help`` is instant.
Exit codes (README, "Troubleshooting"): 0 ok; 2 bad input or options (checked at parse time,
with the allowed range); 3 the conversion or export cannot be done (unsupported ops, a tool
failed); 4 parity failed; 5 a Node.js/TF.js runtime failure of ours; 130 interrupted; 1 a bug.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
import traceback

from converter.api import check_pass_names, export, pass_pipelines, verify_bundle
from converter.errors import InputError, ParityError, TransferJSError
from converter.export.tfjs import ExportOptions
from converter.graph.frozen import frozen_graph
from converter.model import ConvertedModel, Preprocessing
from converter.pipeline import ConvertOptions, convert
from converter.runtimes.bundle_apps import predict_with_node, serve_command
from converter.sources.torch import parse_kwargs
from converter.verify.tolerance import Tolerance
from retrain import TrainConfig, retrain
from retrain.features import candidate_nodes, default_feature_node
from transferjs.console import configure, deterministic_ops

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


def _parser() -> argparse.ArgumentParser:
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
    r.add_argument("--l2", type=NON_NEGATIVE, help="the linear head's L2 strength (default: chosen by cross-validation)")
    r.add_argument("--epochs", type=POSITIVE_INT, default=100, help="maximum epochs of the --hidden head (early stopping)")
    r.add_argument("--learning-rate", type=POSITIVE, default=1e-3)
    r.add_argument("--batch-size", type=number(int, 1, 65536), default=32)
    r.add_argument("--patience", type=POSITIVE_INT, default=10, help="--hidden head epochs without improvement before stopping")
    r.add_argument("--fine-tune", type=number(int, 0), default=0, metavar="N",
                   help="phase 2: also train the backbone's last N weight layers (convolutions/dense), on augmented images")
    r.add_argument("--fine-tune-epochs", type=POSITIVE_INT, default=3, help="fixed budget (warm-up, cosine decay)")
    r.add_argument("--fine-tune-learning-rate", type=POSITIVE, default=3e-4, help="peak learning rate")
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
    p.add_argument("--quantize-weights", action="append", default=[], metavar="PATTERN",
                   help="quantize only weights whose names match this glob (repeatable; default: all)")
    p.add_argument("--shard-size", type=number(int, 1024, 2**31 - 1), default=4 * 1024 * 1024, metavar="BYTES",
                   help="weight shard size (default 4 MiB)")
    p.add_argument("--signature", default="serving_default", help="SavedModel signature to export")
    p.add_argument("--disable-pass", action="append", default=[], metavar="NAME",
                   help="skip this graph pass (repeatable; 'transferjs passes' lists them)")


def _export_options(args):

    patterns = tuple(args.quantize_weights) or ("*",)
    return ExportOptions(quantize=args.quantize, quantize_patterns=patterns, shard_size=args.shard_size, signature=args.signature,
                         disabled_passes=check_pass_names(args.disable_pass))


def _preprocessing_overrides(args) -> dict:
    """The preprocessing fields the flags set (``size``, ``mean``, ``std``, ``scale``), checked at parse time."""
    found = {"size": args.image_size, "mean": args.mean, "std": args.std, "scale": args.scale}
    return {key: value for key, value in found.items() if value is not None}


def _preprocessing(args):
    if not (args.mean or args.std or args.image_size):
        return None

    return Preprocessing(**{"scale": 1 / 255, **_preprocessing_overrides(args)})


def _labels(path):
    if not path:
        return None
    from pathlib import Path


    try:
        text = Path(path).read_text()
    except OSError as e:
        raise InputError(f"Cannot read labels file '{path}': {e.strerror}") from None
    if text.lstrip().startswith("["):
        try:
            return tuple(str(v) for v in json.loads(text))
        except ValueError as e:
            raise InputError(f"Labels file '{path}' is not a JSON list: {e}") from None
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def cmd_convert(args) -> int:

    shapes = dict(args.input_shape)
    options = ConvertOptions(
        input_shapes=shapes or None, batch=args.batch, keep_layout=args.keep_layout, verify=not args.no_verify,
        samples=args.samples, sample_file=args.sample, tolerance=Tolerance(args.atol, args.rtol),
        trust_code=args.trust_code, model_factory=args.model_factory, model_kwargs=parse_kwargs(args.model_kwargs),
        custom_objects=tuple(args.custom_objects), preprocessing=_preprocessing(args), labels=_labels(args.labels),
        export=_export_options(args), verbose=args.verbose, disabled_passes=check_pass_names(args.disable_pass),
    )
    result = convert(args.src, args.out, options, overwrite=args.overwrite)
    print(summary(result.report, args.out))
    return 0


def summary(report: dict, out) -> str:
    """A few lines a person reads after a conversion."""
    lines = [f"Converted {report['source'].get('path', 'module')} ({report['source']['format']}) -> {out}"]
    for t in report["model"]["inputs"]:
        lines.append(f"  input  {t['name']}: {t['shape']} {t['dtype']} {t['layout'] or ''}".rstrip())
    for t in report["model"]["outputs"]:
        lines.append(f"  output {t['name']}: {t['shape']} {t['dtype']}")
    for stage, p in report.get("parity", {}).items():
        for name, o in p["outputs"].items():
            top1 = f", top-1 {o['top1_agreement']:.0%}" if o.get("top1_agreement") is not None else ""
            lines.append(f"  parity {p['reference']} -> {p['candidate']}: {name} max abs {o['max_abs']:.2g}{top1} "
                         f"({'ok' if o['within_tolerance'] else 'FAIL'}) {o.get('note', '')}".rstrip())
    if "tfjs" in report:
        lines.append(f"  TF.js bundle: {out}/tfjs ({report['tfjs']['bytes'] / 1e6:.2f} MB)")
        layers = report["tfjs"].get("layers_model")
        if layers and layers["written"]:
            lines.append(f"  TF.js layers model (trainable with model.fit): {out}/tfjs/layers")
        elif layers:
            lines.append("  no TF.js layers model: " + layers["reason"].replace("\n", ";"))
    lines.append(f"  time: {sum(report['seconds'].values()):.1f} s; report: {out}/report.json")
    return "\n".join(lines)


def cmd_export(args) -> int:

    result = export(args.model_dir, args.out, _export_options(args), overwrite=args.overwrite, verify=not args.no_verify,
                    bake_preprocessing=args.bake_preprocessing, sample_file=args.sample)
    print(f"Wrote {args.out}: {result.bytes / 1e6:.2f} MB, weights {result.quantize or 'float32'} "
          f"({result.weight_bytes / result.float32_bytes:.2f} x float32 weights)")
    if result.parity:
        p = result.parity
        for name, o in p.outputs.items():
            top1 = f", top-1 agreement {o.top1_agreement:.0%}" if o.top1_agreement is not None else ""
            top1 += f" on {o.top1_counted} row(s)" if o.top1_agreement is not None and o.top1_counted is not None else ""
            prob = f", max probability change {o.max_prob_change:.2g}" if o.max_prob_change is not None else ""
            print(f"  parity tensorflow float32 -> {p.candidate}: {name} max abs {o.max_abs:.2g}{prob}{top1} "
                  f"on {p.samples} sample(s) {o.note}".rstrip())
    return 0


def cmd_verify(args) -> int:

    report = verify_bundle(args.path, args.bundle, args.model_dir, samples=args.samples, backend=args.backend)
    print(json.dumps(report.to_dict(), indent=2))
    if not report.ok:
        raise ParityError([report])
    return 0


def cmd_predict(args) -> int:

    results = predict_with_node(args.bundle, args.images, args.top, args.backend, partial=True)
    for r in results:
        if "top" in r:
            print(r["image"])
            for t in r["top"]:
                print(f"  {t['label']:<24} {100 * t['probability']:5.1f}%")
    bad = [r["error"] for r in results if "error" in r]
    if bad:  # the good images' answers are printed first
        raise InputError(f"{len(bad)} of {len(results)} image(s) could not be classified:\n  " + "\n  ".join(bad))
    return 0


def cmd_serve(args) -> int:
    # The process becomes node serve.mjs: a SIGTERM (not only Ctrl+C) then stops the server itself.
    cmd = serve_command(args.bundle, args.port)
    sys.stdout.flush()
    os.execv(cmd[0], cmd)


def cmd_retrain(args) -> int:
    from pathlib import Path


    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate, hidden=args.hidden,
                         label_smoothing=args.label_smoothing, patience=args.patience, seed=args.seed,
                         fine_tune=args.fine_tune, fine_tune_epochs=args.fine_tune_epochs,
                         fine_tune_learning_rate=args.fine_tune_learning_rate, augment=not args.no_augment,
                         folds=args.folds, refit=not args.no_refit, l2=args.l2)
    result = retrain(args.model_dir, args.data or args.data_csv, args.out, config, args.test_split,
                     args.feature_node, args.cache_dir, overwrite=args.overwrite, baseline=not args.no_baseline,
                     resume=args.resume, progress=not args.no_progress, log=lambda m: print(m, file=sys.stderr),
                     preprocessing=_preprocessing_overrides(args), allow_outside=args.allow_outside,
                     before_training=deterministic_ops)
    r = result.report
    print(f"Retrained {args.model_dir} on {sum(r['dataset']['counts'].values())} images, {len(r['dataset']['labels'])} classes "
          f"-> {args.out}")
    print(f"  split {r['dataset']['split']}; skipped {len(r['skipped'])} unreadable file(s)")
    if "fine_tune" in r:
        ft = r["fine_tune"]
        print(f"  frozen features: {r['test_frozen_features']['accuracy']:.1%}; fine-tuned ({ft['layers']} layers, "
              f"{ft['parameters']:,} weights): "
              + (f"{ft['test_accuracy']:.1%}" if ft["kept"] else "not kept (no better on held-out images)"))
    print(f"  {r['dataset']['evaluated_on']} accuracy: {r['test']['accuracy']:.1%}"
          + (f" (raw-pixel baseline {r['baseline_raw_pixels_accuracy']:.1%})" if "baseline_raw_pixels_accuracy" in r else ""))
    if "runtime_check" in r:
        c = r["runtime_check"]
        print(f"  held-out check ({c['images']} images): TF.js {c['backend']} {c['tfjs_accuracy']:.1%}, "
              f"SavedModel {c['saved_model_accuracy']:.1%}; {r['evaluation']['delivered']}")
    out = Path(args.out)
    print(f"  TF.js bundle with labels: {out / 'tfjs'}; JS transfer learning: {out / 'tfjs-transfer'}; "
          f"report: {out / 'report.html'}")
    return 0


def cmd_inspect(args) -> int:

    model = ConvertedModel.load(args.model_dir)
    for t in model.inputs:
        print(f"input  {t.name}: {t.shape} {t.dtype} {t.layout or ''}")
    for t in model.outputs:
        print(f"output {t.name}: {t.shape} {t.dtype}")
    graph_def, frozen = frozen_graph(model.saved_model)
    try:
        default = default_feature_node(graph_def, frozen)
    except TransferJSError:
        default = None
    print("candidate feature nodes (2-D float tensors), last 15:")
    for name, shape in candidate_nodes(graph_def, frozen)[-15:]:
        print(f"  {name} {shape}" + ("   <- default" if name == default else ""))
    return 0


def cmd_passes(args) -> int:
    for where, passes in pass_pipelines().items():
        print(f"{where} passes ({'before onnx2tf' if where == 'onnx' else 'on every exported model.json'}), in order:")
        for p in passes:
            print(f"  {p.__name__:<36} {(p.__doc__ or '').strip().splitlines()[0]}")
    return 0


COMMANDS = {"convert": cmd_convert, "export": cmd_export, "predict": cmd_predict, "serve": cmd_serve, "verify": cmd_verify,
            "retrain": cmd_retrain, "inspect": cmd_inspect, "passes": cmd_passes}


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2

    configure(verbose=args.verbose)
    try:
        return COMMANDS[args.command](args)
    except TransferJSError as e:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a file or folder the user named (read-only, full disk, damaged): their input
        if args.verbose:
            traceback.print_exc()
        text = e.strerror or str(e)
        print(f"error: cannot read or write '{e.filename}': {text}" if e.filename else
              f"error: {text} (a damaged or unreadable file)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = "; the same command with --resume continues from the last finished epoch" if args.command == "retrain" else ""
        print(f"interrupted: nothing was written{hint}", file=sys.stderr)
        return 130
    except Exception as e:
        if args.verbose:
            traceback.print_exc()
        print(f"error: unexpected {type(e).__name__}: {e}\n(run again with --verbose for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
