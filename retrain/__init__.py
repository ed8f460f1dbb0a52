"""Transfer learning on a converted model: a new head on frozen pretrained features.

Example:
    >>> from retrain import retrain
    >>> result = retrain("out/effnet", "photos/", "out/pets")
    >>> result["report"]["test"]["accuracy"]
    0.93
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from retrain.train import TrainConfig

__all__ = ["retrain", "TrainConfig"]


def default_cache_dir() -> Path:
    """Where features are cached: ``cache_root() / "features"`` (``~/.cache/transferjs/features``)."""
    from converter.cache import cache_root

    return cache_root() / "features"


def _preprocessing(model, overrides: dict | None = None):
    """The model's preprocessing (its metadata, else its input size and [0, 1] pixels), with ``overrides``."""
    import dataclasses

    from converter.model import Preprocessing

    p = model.preprocessing
    if p is None or p.size is None:
        (inp,) = model.inputs
        size = tuple(inp.shape[1:3] if inp.layout == "NHWC" else inp.shape[2:4])
        p = dataclasses.replace(p, size=size) if p is not None else Preprocessing(size=size)
    return dataclasses.replace(p, **(overrides or {}))


def _saved_model(function, folder: Path, input_spec, output: str, tracked=()) -> None:
    """``function`` (image batch → tensor) as a SavedModel whose signature returns ``{output: …}``.

    ``tracked``: the variables and Keras models ``function`` reads (saved with it).
    """
    import tensorflow as tf

    class Retrained(tf.Module):
        def __init__(self):
            super().__init__()
            self.tracked = list(tracked)

        @tf.function(input_signature=[input_spec])
        def serve(self, image):
            return {output: function(image)}

    module = Retrained()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})


def run_dir(out) -> Path:
    """Where an unfinished run keeps its checkpoints: a hidden folder beside ``out``."""
    out = Path(out).absolute()
    return out.parent / f".{out.name}.transferjs-run"


def _fingerprint(fx, dataset, parts, config) -> str:
    import dataclasses
    import hashlib

    text = json.dumps([fx.key, dataclasses.asdict(config), [(str(p), y) for p, y in dataset.items],
                       {k: list(map(int, v)) for k, v in parts.items()}], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _prepare_run_dir(folder: Path, fingerprint: str, resume: bool, log) -> None:
    import shutil

    stamp = folder / "fingerprint"
    if folder.exists() and not (resume and stamp.exists() and stamp.read_text() == fingerprint):
        if resume:
            log(f"note: the checkpoints in {folder} are from another model, data or settings; starting over")
        else:
            log(f"note: discarding an interrupted run's checkpoints in {folder} (--resume continues one)")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)


def retrain(model_dir, data, out, config: TrainConfig = TrainConfig(), val_split: float = 0.15, test_split: float = 0.15,
            feature_node: str | None = None, cache_dir=None, overwrite: bool = False, baseline: bool = True,
            verify: bool = True, resume: bool = False, progress: bool = True, log=print,
            preprocessing: dict | None = None) -> dict:
    """Train a new head on ``data`` over the features of ``model_dir`` (then optionally fine-tune); write ``out``.

    Args:
        model_dir: a folder written by ``transferjs convert`` (or a previous retrain).
        data: a folder of class sub-folders, or a ``.csv`` of ``path,label`` rows.
        out: the output folder: ``saved_model/``, ``tfjs/`` (bundle with labels), ``tfjs-transfer/``
            (``backbone/`` graph model + ``head/`` layers model + ``retrain_head.mjs``), ``report.json``, ``report.html``.
        config: training settings (``TrainConfig``; ``fine_tune=N`` adds phase 2).
        val_split, test_split: stratified, seeded fractions (ignored when ``data`` has train/val/test).
        feature_node: the backbone tensor to take features from (default: what feeds its classifier).
        cache_dir: the feature cache (default ``default_cache_dir()``).
        baseline: also train softmax regression on raw pixels, for comparison.
        resume: continue from the checkpoints an interrupted run with the same settings left.
        progress: progress bars on stderr.
        preprocessing: ``Preprocessing`` fields to override (``size``, ``scale``, ``mean``, ``std``).

    Returns:
        ``{"report": dict, "model": ConvertedModel, "bundle": Path, "held_out": [(path, label)]}``.

    Raises:
        InputError: bad data (before any training), bad feature node.
        ParityError: an exported TF.js bundle differs from its SavedModel.
    """
    import dataclasses
    import shutil

    import tensorflow as tf

    from converter.atomic import check_writable
    from converter.errors import InputError
    from converter.model import ConvertedModel
    from retrain.data import read_csv, scan_folder, split
    from retrain.features import FeatureExtractor, cached_features
    from retrain.progress import Progress
    from retrain.train import metrics, raw_pixel_baseline, train_head

    check_writable(out, overwrite)
    tf.config.experimental.enable_op_determinism()  # the same seed gives the same numbers, threads or not
    seconds = {}
    t = time.perf_counter()
    backbone = ConvertedModel.load(model_dir)
    backbone = dataclasses.replace(backbone, preprocessing=_preprocessing(backbone, preprocessing))
    dataset = read_csv(data) if str(data).endswith(".csv") else scan_folder(data)
    parts = split(dataset, val_split, test_split, config.seed)
    fx = FeatureExtractor(backbone, feature_node)
    checkpoints = run_dir(out)
    _prepare_run_dir(checkpoints, _fingerprint(fx, dataset, parts, config), resume, log)
    seconds["load"] = time.perf_counter() - t

    t = time.perf_counter()
    paths = [p for p, _ in dataset.items]
    bar = Progress("features", len(paths), enabled=progress)
    first = []  # the first report counts the cached images

    def advance(done: int, total: int) -> None:
        first.append(done)
        bar.update(done - bar.done)

    feats, ok, failed = cached_features(fx, paths, Path(cache_dir or default_cache_dir()), progress=advance)
    bar.close(f"{first[0] if first else 0} from the cache")
    seconds["features"] = time.perf_counter() - t
    skipped = dataset.skipped + sorted(failed.items())
    y = np.array([label for _, label in dataset.items])
    idx = {k: [i for i in v if ok[i]] for k, v in parts.items()}
    if not idx["train"] or not idx["val"]:
        shutil.rmtree(checkpoints, ignore_errors=True)
        raise InputError("No readable training or validation images are left")

    t = time.perf_counter()
    head, history = train_head(feats[idx["train"]], y[idx["train"]], feats[idx["val"]], y[idx["val"]], len(dataset.labels),
                               config, checkpoints / "head.npz", resume, progress, log)
    seconds["train_head"] = time.perf_counter() - t
    test_idx = idx["test"] or idx["val"]
    frozen_metrics = metrics(y[test_idx], head(feats[test_idx], training=False).numpy().argmax(1), dataset.labels)
    report = {
        "backbone": {"model_dir": str(model_dir), "feature_node": fx.node, "feature_dim": fx.dim},
        "dataset": {"labels": dataset.labels, "counts": dataset.counts(), "split": {k: len(v) for k, v in idx.items()},
                    "evaluated_on": "test" if idx["test"] else "val (no test split)"},
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
        "config": dataclasses.asdict(config),
        "history": history,
        "test": frozen_metrics,
        "test_frozen_features": {"accuracy": frozen_metrics["accuracy"]},
    }
    graph = fx.extract
    if config.fine_tune:
        t = time.perf_counter()
        graph, report["fine_tune"] = _fine_tune(fx, head, history, dataset, idx, y, test_idx, config, checkpoints,
                                                resume, progress, log)
        if report["fine_tune"]["kept"]:
            report["test"] = report["fine_tune"].pop("test")
        seconds["fine_tune"] = time.perf_counter() - t
    if baseline and idx["test"]:
        t = time.perf_counter()
        report["baseline_raw_pixels_accuracy"] = raw_pixel_baseline(
            [paths[i] for i in idx["train"]], y[idx["train"]], [paths[i] for i in idx["test"]], y[idx["test"]], seed=config.seed)
        seconds["baseline"] = time.perf_counter() - t

    model = _export(out, overwrite, backbone, fx, graph, head, dataset.labels, report, seconds, verify)
    shutil.rmtree(checkpoints, ignore_errors=True)
    held_out = [(paths[i], dataset.labels[y[i]]) for i in test_idx]
    return {"report": report, "model": model, "bundle": Path(out) / "tfjs", "held_out": held_out}


def _fine_tune(fx, head, history, dataset, idx, y, test_idx, config, checkpoints, resume, progress, log):
    """Phase 2; kept only when an epoch beats the frozen head's validation accuracy (else rolled back)."""
    from retrain.finetune import fine_tune, predict
    from retrain.train import metrics

    graph = fx.trainable(config.fine_tune)
    items = {k: [(dataset.items[i][0], int(y[i])) for i in v] for k, v in idx.items()}
    start = {"loss": history["best_val_loss"], "accuracy": history["best_val_accuracy"]}
    result = fine_tune(graph, head, fx, items["train"], items["val"], len(dataset.labels), config, start,
                       checkpoints / "fine_tune.npz", resume, progress, log)
    h = result["history"]
    kept = h["best_epoch"] > 0
    test_items = items["test"] or items["val"]  # as test_idx
    summary = {"layers": len(h["trainable_layers"]), "parameters": h["trainable_parameters"], "history": h, "kept": kept,
               "selected_by": "validation accuracy (ties: loss), against the frozen head's"}
    if not kept:
        log(f"fine-tune: no epoch beat the frozen head's validation accuracy {start['accuracy']:.3f}; "
            "keeping the frozen-feature model")
        return fx.extract, summary
    summary["test"] = metrics(y[test_idx], predict(result["forward"], test_items, fx.model, config.batch_size).argmax(1),
                              dataset.labels)
    summary["test_accuracy"] = summary["test"]["accuracy"]
    return graph, summary


def _export(out, overwrite, backbone, fx, graph, head, labels, report, seconds, verify):
    """Write ``out`` atomically: combined SavedModel, TF.js bundle, transfer-learning bundle, reports."""
    import tensorflow as tf

    from converter.atomic import atomic_output_dir
    from converter.errors import ParityError
    from converter.export.bundle import write_tfjs_bundle
    from converter.export.tfjs import ExportOptions
    from converter.export.transfer import write_transfer_bundle
    from converter.model import ConvertedModel, TensorSpec
    from converter.verify.parity import tensorflow_vs_tfjs
    from retrain.report import write_report_html

    t = time.perf_counter()
    (inp,) = backbone.inputs
    spec = tf.TensorSpec([None, *fx.input.shape[1:]], tf.float32, name=inp.name)
    variables = graph.trainable_variables
    with tempfile.TemporaryDirectory() as work, atomic_output_dir(out, overwrite) as tmp:
        _saved_model(lambda x: head(graph(x), training=False), tmp / "saved_model", spec, "probabilities", [head, *variables])
        model = ConvertedModel(
            tmp, inputs=[inp], outputs=[TensorSpec("probabilities", [None, len(labels)], "float32", meaning="probabilities")],
            source={"format": "retrained", "path": str(Path(out)), "backbone": str(backbone.directory), "name": Path(out).name},
            preprocessing=backbone.preprocessing, labels=labels,
        )
        model.save()
        written = write_tfjs_bundle(model, tmp / "tfjs", ExportOptions())
        features = ConvertedModel(
            Path(work), inputs=[inp], outputs=[TensorSpec("features", [None, fx.dim], "float32", meaning="features")],
            source={"format": "retrained-backbone", "backbone": str(backbone.directory), "name": "backbone"},
            preprocessing=backbone.preprocessing,
        )
        _saved_model(graph, features.saved_model, spec, "features", variables)
        features.save()
        transfer = tmp / "tfjs-transfer"
        write_transfer_bundle(features, head, labels, transfer)
        report["tfjs"] = {"bytes": written["bytes"], "passes": written["passes"],
                          "transfer": {"backbone": "tfjs-transfer/backbone/model.json", "head": "tfjs-transfer/head/model.json"}}
        seconds["export"] = time.perf_counter() - t
        if verify:
            parity = tensorflow_vs_tfjs(model, tmp / "tfjs")
            backbone_parity = tensorflow_vs_tfjs(features, transfer / "backbone")
            report["parity_tfjs"] = parity.to_dict()
            report["parity_tfjs_backbone"] = backbone_parity.to_dict()
            if not (parity.ok and backbone_parity.ok):
                raise ParityError([r for r in (parity, backbone_parity) if not r.ok])
        report["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        write_report_html(report, tmp)
    return model.moved_to(out)
