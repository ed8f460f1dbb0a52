"""Transfer learning on a converted model: a new head on frozen pretrained features.

Example:
    >>> from retrain import retrain
    >>> result = retrain("out/effnet", "photos/", "out/pets")
    >>> result["report"]["test"]["accuracy"]
    0.93
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from retrain.evaluation import describe_head, keras_head, plan_evaluation
from retrain.normalization import missing_normalization_warning
from retrain.phases import fine_tune_phase, frozen_phase
from retrain.report_gallery import confident_mistakes, write_thumbnails
from retrain.runtime_check import score_in_runtimes
from retrain.train import TrainConfig, raw_pixel_baseline

__all__ = ["retrain", "TrainConfig"]


def default_cache_dir() -> Path:
    """Where features are cached: $TRANSFERJS_CACHE, else ~/.cache/transferjs/features."""
    base = os.environ.get("TRANSFERJS_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "transferjs"
    return Path(base) / "features"


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


def _fingerprint(fx, dataset, folds, config) -> str:
    import dataclasses
    import hashlib

    text = json.dumps([fx.key, dataclasses.asdict(config), [(str(p), y) for p, y in dataset.items],
                       [list(map(int, fold)) for fold in folds]], sort_keys=True)
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


def retrain(model_dir, data, out, config: TrainConfig = TrainConfig(), test_split: float = 0.15,
            feature_node: str | None = None, cache_dir=None, overwrite: bool = False, baseline: bool = True,
            verify: bool = True, resume: bool = False, progress: bool = True, log=print,
            preprocessing: dict | None = None) -> dict:
    """Train a new head on ``data`` over the features of ``model_dir`` (then optionally fine-tune); write ``out``.

    Settings are chosen and accuracy is estimated on held-out images only (k-fold cross-validation up
    to ``config.kfold_max_images`` images, else a fixed test split; the report says which); the exported
    model is then trained on every image (``config.refit``).

    Args:
        model_dir: a folder written by ``transferjs convert`` (or a previous retrain).
        data: a folder of class sub-folders, or a ``.csv`` of ``path,label`` rows.
        out: the output folder: ``saved_model/``, ``tfjs/`` (bundle with labels), ``tfjs-transfer/``
            (``backbone/`` graph model + ``head/`` layers model + ``retrain_head.mjs``), ``report.json``, ``report.html``.
        config: training settings (``TrainConfig``; ``fine_tune=N`` adds phase 2).
        test_split: the stratified, seeded test fraction when the data set is too large for k-fold
            (a ``train/ val/ test/`` layout's own ``test/`` is always the test split).
        feature_node: the backbone tensor to take features from (default: what feeds its classifier).
        cache_dir: the feature cache (default ``default_cache_dir()``).
        baseline: also train softmax regression on raw pixels, for comparison.
        resume: continue from the checkpoints an interrupted run with the same settings left.
        progress: progress bars on stderr.
        preprocessing: ``Preprocessing`` fields to override (``size``, ``scale``, ``mean``, ``std``).

    Returns:
        ``{"report": dict, "model": ConvertedModel, "bundle": Path, "held_out": [(path, label)]}``
        (``held_out``: the check split, images the check model never trained on).

    Raises:
        InputError: bad data (before any training), bad feature node.
        ParityError: an exported TF.js bundle differs from its SavedModel.
    """
    import shutil

    import tensorflow as tf

    from converter.atomic import check_writable
    from converter.model import ConvertedModel
    from retrain.data import read_csv, scan_folder
    from retrain.features import FeatureExtractor

    check_writable(out, overwrite)
    tf.config.experimental.enable_op_determinism()  # the same seed gives the same numbers, threads or not
    seconds = {}
    t = time.perf_counter()
    backbone = ConvertedModel.load(model_dir)
    warning = missing_normalization_warning(backbone, preprocessing)
    backbone.preprocessing = _preprocessing(backbone, preprocessing)
    if warning:
        log(warning)
    dataset = read_csv(data) if str(data).endswith(".csv") else scan_folder(data)
    fx = FeatureExtractor(backbone, feature_node)
    seconds["load"] = time.perf_counter() - t
    t = time.perf_counter()
    feats, usable, skipped = _features(fx, dataset, cache_dir, progress)
    seconds["features"] = time.perf_counter() - t
    items = [(dataset.items[i][0], dataset.items[i][1]) for i in usable]
    y, x = np.array([label for _, label in items], int), feats[usable]
    plan = plan_evaluation(y, config, _given_test_positions(dataset, usable), test_split)
    checkpoints = run_dir(out)
    _prepare_run_dir(checkpoints, _fingerprint(fx, dataset, plan.folds, config), resume, log)

    t = time.perf_counter()
    frozen = frozen_phase(x, y, dataset.labels, plan, config, log)
    seconds["train_head"] = time.perf_counter() - t
    report = _report(model_dir, fx, dataset, skipped, plan, frozen, config)
    shown = {"positions": plan.scored(), "probabilities": frozen["held"]["probabilities"][plan.scored()]}
    check_model = (fx.extract, keras_head(frozen["check_head"], len(dataset.labels), config))
    delivered = (fx.extract, keras_head(frozen["delivered_head"], len(dataset.labels), config))
    if config.fine_tune:
        t = time.perf_counter()
        tuned = fine_tune_phase(fx, items, dataset.labels, plan, frozen, config, checkpoints, resume, progress, log)
        report["fine_tune"], check_model, delivered = tuned["summary"], tuned["check"], tuned["delivered"]
        if tuned["summary"]["kept"]:
            report["test"] = tuned["summary"].pop("test")
            shown = {"positions": plan.check, "probabilities": tuned["check_probabilities"]}
            report["evaluation"]["delivered_estimate"] = "fine-tuned, on the check split"
        seconds["fine_tune"] = time.perf_counter() - t
    if baseline:
        t = time.perf_counter()
        rest, check = plan.check_training, plan.check
        report["baseline_raw_pixels_accuracy"] = raw_pixel_baseline(
            [items[i][0] for i in rest], y[rest], [items[i][0] for i in check], y[check], seed=config.seed)
        seconds["baseline"] = time.perf_counter() - t
    report["misclassified"] = confident_mistakes([items[i][0] for i in shown["positions"]], y[shown["positions"]],
                                                 shown["probabilities"], dataset.labels)
    check_items = [items[i] for i in plan.check]
    if config.refit:  # the delivered model saw the check split: score the check model, exported the same way
        t = time.perf_counter()
        report["runtime_check"] = _score_check_model(backbone, fx, check_model, dataset.labels, check_items)
        seconds["runtime_check"] = time.perf_counter() - t
    model = _export(out, overwrite, backbone, fx, delivered, dataset.labels, report, seconds, verify,
                    None if config.refit else check_items)
    shutil.rmtree(checkpoints, ignore_errors=True)
    held_out = [(items[i][0], dataset.labels[y[i]]) for i in plan.check]
    return {"report": report, "model": model, "bundle": Path(out) / "tfjs", "held_out": held_out}


def _features(fx, dataset, cache_dir, progress: bool):
    """Every image's features (from the cache when known); positions of the readable ones; all skipped files."""
    from converter.errors import InputError
    from retrain.features import cached_features
    from retrain.progress import Progress

    paths = [p for p, _ in dataset.items]
    bar = Progress("features", len(paths), enabled=progress)
    first = []  # the first report counts the cached images

    def advance(done: int, total: int) -> None:
        first.append(done)
        bar.update(done - bar.done)

    feats, ok, failed = cached_features(fx, paths, Path(cache_dir or default_cache_dir()), progress=advance)
    bar.close(f"{first[0] if first else 0} from the cache")
    usable = np.flatnonzero(ok)
    if len(usable) < 2:
        raise InputError(f"Only {len(usable)} readable image(s) are left; retraining needs images of at least 2 classes")
    return feats, usable, dataset.skipped + sorted(failed.items())


def _given_test_positions(dataset, usable: np.ndarray):
    """The user's test/ folder (train/ val/ test/ layout) as positions among the usable images, else None."""
    given = (dataset.given_splits or {}).get("test")
    if not given:
        return None
    return np.flatnonzero(np.isin(usable, given))


def _report(model_dir, fx, dataset, skipped, plan, frozen, config) -> dict:
    import dataclasses

    statement = plan.describe()
    delivered = ("The exported model was then trained on all images with the settings chosen the same way"
                 if config.refit else "The exported model is the one trained without the check split (--no-refit)")
    check = "fold 1" if plan.kind == "k-fold" else "the test split"
    return {
        "backbone": {"model_dir": str(model_dir), "feature_node": fx.node, "feature_dim": fx.dim,
                     "preprocessing": dataclasses.asdict(fx.model.preprocessing)},
        "dataset": {"labels": dataset.labels, "counts": dataset.counts(),
                    "split": {"check_training": len(plan.check_training), "check": len(plan.check)},
                    "evaluated_on": f"{len(plan.folds)}-fold cross-validation" if plan.kind == "k-fold" else "test split"},
        "evaluation": {"kind": plan.kind, "folds": len(plan.folds), "images": plan.images, "statement": statement,
                       "check": check, "check_images": len(plan.check), "refit": config.refit, "delivered": delivered,
                       "frozen": f"frozen head, {statement.split(':')[0]}", "delivered_estimate": "frozen head"},
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
        "config": dataclasses.asdict(config),
        "head": describe_head(frozen["delivered_head"]),
        "history": getattr(frozen["delivered_head"], "history", {}),
        "test": frozen["metrics"],
        "test_frozen_features": {"accuracy": frozen["held"]["accuracy"], "check_accuracy": frozen["held"]["check_accuracy"]},
    }


def _score_check_model(backbone, fx, check_model, labels, check_items) -> dict:
    """Export the check model (trained without ``check_items``) as the delivered one is; score it in TF and TF.js."""
    with tempfile.TemporaryDirectory(prefix="transferjs-check-") as work:
        model, bundle, _ = _write_classifier(Path(work), backbone, fx, check_model, labels, Path(work).name)
        result = score_in_runtimes(model, bundle, check_items)
    result.pop("tfjs_probabilities")
    return result


def _write_classifier(folder: Path, backbone, fx, graph_and_head, labels, name: str):
    """``folder/saved_model`` (image in, ``probabilities`` out), ``spec.json`` and ``folder/tfjs``.

    Returns:
        ``(ConvertedModel, bundle folder, what write_tfjs_bundle reported)``.
    """
    import tensorflow as tf

    from converter.export import write_tfjs_bundle
    from converter.export.tfjs import ExportOptions
    from converter.model import ConvertedModel, TensorSpec

    graph, head = graph_and_head
    (inp,) = backbone.inputs
    spec = tf.TensorSpec([None, *fx.input.shape[1:]], tf.float32, name=inp.name)
    _saved_model(lambda x: head(graph(x), training=False), folder / "saved_model", spec, "probabilities",
                 [head, *graph.trainable_variables])
    model = ConvertedModel(
        folder, inputs=[inp], outputs=[TensorSpec("probabilities", [None, len(labels)], "float32")],
        source={"format": "retrained", "path": str(folder), "backbone": str(backbone.directory), "name": name},
        preprocessing=backbone.preprocessing, labels=labels,
    )
    model.save()
    return model, folder / "tfjs", write_tfjs_bundle(model, folder / "tfjs", ExportOptions())


def _export(out, overwrite, backbone, fx, delivered, labels, report, seconds, verify, score_items=None):
    """Write ``out`` atomically: combined SavedModel, TF.js bundle, transfer-learning bundle, reports.

    ``score_items``: held-out ``(path, label)`` the delivered model never trained on (``--no-refit``):
    its own bundle is scored on them in TF.js beside its SavedModel.
    """
    import tensorflow as tf

    from converter.atomic import atomic_output_dir
    from converter.errors import ParityError
    from converter.export import write_tfjs_bundle
    from converter.export.layers import keras_to_layers_model
    from converter.export.tfjs import ExportOptions
    from converter.model import ConvertedModel, TensorSpec
    from converter.parity_run import tensorflow_vs_tfjs
    from retrain.report import write_report_html
    from retrain.transfer_js import write_transfer_example

    t = time.perf_counter()
    graph, head = delivered
    (inp,) = backbone.inputs
    spec = tf.TensorSpec([None, *fx.input.shape[1:]], tf.float32, name=inp.name)
    with tempfile.TemporaryDirectory() as work, atomic_output_dir(out, overwrite) as tmp:
        model, bundle, written = _write_classifier(tmp, backbone, fx, delivered, labels, Path(out).name)
        model.source["path"] = str(Path(out))
        model.save()
        features = ConvertedModel(
            Path(work), inputs=[inp], outputs=[TensorSpec("features", [None, fx.dim], "float32")],
            source={"format": "retrained-backbone", "backbone": str(backbone.directory), "name": "backbone"},
            preprocessing=backbone.preprocessing,
        )
        _saved_model(graph, features.saved_model, spec, "features", graph.trainable_variables)
        features.save()
        transfer = tmp / "tfjs-transfer"
        write_tfjs_bundle(features, transfer / "backbone", ExportOptions())
        keras_to_layers_model(head, transfer / "head")
        write_transfer_example(transfer, labels)
        report["tfjs"] = {"bytes": written["bytes"], "passes": written["passes"],
                          "transfer": {"backbone": "tfjs-transfer/backbone/model.json", "head": "tfjs-transfer/head/model.json"}}
        seconds["export"] = time.perf_counter() - t
        if score_items is not None:
            t = time.perf_counter()
            report["runtime_check"] = score_in_runtimes(model, bundle, score_items)
            report["runtime_check"].pop("tfjs_probabilities")
            seconds["runtime_check"] = time.perf_counter() - t
        if verify:
            parity = tensorflow_vs_tfjs(model, bundle)
            backbone_parity = tensorflow_vs_tfjs(features, transfer / "backbone")
            report["parity_tfjs"] = parity.to_dict()
            report["parity_tfjs_backbone"] = backbone_parity.to_dict()
            if not (parity.ok and backbone_parity.ok):
                raise ParityError([r for r in (parity, backbone_parity) if not r.ok])
        report["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
        write_thumbnails(report["misclassified"], tmp)
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        write_report_html(report, tmp)
    model.directory = Path(out)
    return model
