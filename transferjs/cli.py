"""The ``transferjs`` command: parse, call the Python API, map errors to exit codes.

The libraries import heavy frameworks only inside the functions that need them, so ``--help`` is instant.
Exit codes (README, "Troubleshooting"): 0 ok; 2 bad input or options (checked at parse time,
with the allowed range); 3 the conversion or export cannot be done (unsupported ops, a tool
failed); 4 parity failed; 5 a Node.js/TF.js runtime failure of ours; 130 interrupted; 1 a bug.
"""

from __future__ import annotations

import json
import os
import sys
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
from retrain.distributed import join_cluster
from retrain.features import candidate_nodes, default_feature_node
from transferjs.console import configure, deterministic_ops
from transferjs.options import build_parser
from transferjs.workers import run_local_workers

def _export_options(args):

    patterns = tuple(args.quantize_weights) or ("*",)
    return ExportOptions(quantize=args.quantize, quantize_patterns=patterns, shard_size=args.shard_size, signature=args.signature,
                         disabled_passes=check_pass_names(args.disable_pass), restore_at_load=args.restore_at_load,
                         calibration_images=tuple(args.calibration_images))


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
        lines.extend(_storage_note(report))
    lines.append(f"  time: {sum(report['seconds'].values()):.1f} s; report: {out}/report.json")
    return "\n".join(lines)


def _storage_note(report: dict) -> list[str]:
    """A line when the source stored 8/16-bit weights and the bundle holds them as float32 (a TF.js import
    would otherwise grow 4x without a word)."""
    stored = [d for d in report["source"].get("weight_storage", ()) if d != "float32"]
    if not stored or report["tfjs"].get("quantize"):
        return []
    mode = "uint8" if "uint8" in stored else stored[0]
    return [f"  note: the source stored its weights as {'/'.join(stored)}; this bundle holds them as float32 "
            f"(read as TF.js dequantizes them). Pass --quantize {mode} to keep the bundle small."]


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

    if args.workers and not os.environ.get("TF_CONFIG"):  # this process starts the workers and waits
        return run_local_workers([sys.executable, "-m", "transferjs.cli", *args.argv], args.workers)
    workers = join_cluster() if os.environ.get("TF_CONFIG") else None
    if workers is not None and args.workers and workers.count != args.workers:
        raise InputError(f"--workers {args.workers} but TF_CONFIG names {workers.count} workers")
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate, hidden=args.hidden,
                         label_smoothing=args.label_smoothing, patience=args.patience, seed=args.seed,
                         fine_tune=args.fine_tune, fine_tune_epochs=args.fine_tune_epochs,
                         fine_tune_learning_rate=args.fine_tune_learning_rate, augment=not args.no_augment,
                         fine_tune_layer_decay=args.fine_tune_layer_decay, fine_tune_mixup=args.fine_tune_mixup,
                         fine_tune_weight_average=args.fine_tune_weight_average,
                         folds=args.folds, refit=not args.no_refit, l2=args.l2, multi_level=not args.no_multi_level)
    result = retrain(args.model_dir, args.data or args.data_csv, args.out, config, args.test_split,
                     args.feature_node, args.cache_dir, overwrite=args.overwrite, baseline=not args.no_baseline,
                     resume=args.resume, progress=not args.no_progress, log=lambda m: print(m, file=sys.stderr),
                     preprocessing=_preprocessing_overrides(args), allow_outside=args.allow_outside,
                     before_training=deterministic_ops, workers=workers)
    r = result.report
    if workers is not None and not workers.chief:
        print(f"worker {workers.rank} of {workers.count}: done (the chief wrote {args.out})")
        return 0
    print(f"Retrained {args.model_dir} on {sum(r['dataset']['counts'].values())} images, {len(r['dataset']['labels'])} classes "
          f"-> {args.out}")
    print(f"  split {r['dataset']['split']}; skipped {len(r['skipped'])} unreadable file(s)")
    if "cv" in r["features"]:
        cv = r["features"]["cv"]
        print(f"  features: {r['features']['used']} ({r['features']['dim']}), inner cross-validation default "
              f"{cv['default']['accuracy']:.1%} / multi-level {cv['multi-level']['accuracy']:.1%}")
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
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # --workers starts this same command again
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
