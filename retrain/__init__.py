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

from retrain.train import TrainConfig

__all__ = ["retrain", "TrainConfig"]


def default_cache_dir() -> Path:
    """Where features are cached: $TRANSFERJS_CACHE, else ~/.cache/transferjs/features."""
    base = os.environ.get("TRANSFERJS_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "transferjs"
    return Path(base) / "features"


def _preprocessing(model):
    from converter.model import Preprocessing

    if model.preprocessing is not None:
        return model.preprocessing
    (inp,) = model.inputs
    size = tuple(inp.shape[1:3] if inp.layout == "NHWC" else inp.shape[2:4])
    return Preprocessing(size=size)


def _combined_saved_model(fx, head, folder: Path, input_name: str) -> None:
    """Backbone (frozen graph, re-imported) + head as one SavedModel: image in, probabilities out."""
    import tensorflow as tf

    class Retrained(tf.Module):
        def __init__(self):
            super().__init__()
            self.head = head

        @tf.function(input_signature=[tf.TensorSpec([None, *fx.input.shape[1:]], tf.float32, name=input_name)])
        def serve(self, image):
            return {"probabilities": self.head(fx.extract(image), training=False)}

    module = Retrained()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})


def retrain(model_dir, data, out, config: TrainConfig = TrainConfig(), val_split: float = 0.15, test_split: float = 0.15,
            feature_node: str | None = None, cache_dir=None, overwrite: bool = False, baseline: bool = True,
            verify: bool = True) -> dict:
    """Train a new head on ``data`` over the frozen features of ``model_dir``; write ``out``.

    Args:
        model_dir: a folder written by ``transferjs convert`` (or a previous retrain).
        data: a folder of class sub-folders, or a ``.csv`` of ``path,label`` rows.
        out: the output folder: ``saved_model/``, ``tfjs/`` (with labels; ``tfjs/head`` is the
            head as a trainable TF.js layers model), ``spec.json``, ``report.json``.
        config: head training settings (``TrainConfig``).
        val_split, test_split: stratified, seeded fractions (ignored when ``data`` has train/val/test).
        feature_node: the backbone tensor to take features from (default: what feeds its classifier).
        cache_dir: the feature cache (default ``default_cache_dir()``).
        baseline: also train softmax regression on raw pixels, for comparison.

    Returns:
        ``{"report": dict, "model": ConvertedModel, "bundle": Path, "held_out": [(path, label)]}``.

    Raises:
        InputError: bad data (before any training), bad feature node.
        ParityError: the exported TF.js bundle differs from the SavedModel.
    """
    import dataclasses

    from converter.atomic import atomic_output_dir, check_writable
    from converter.errors import InputError, ParityError
    from converter.export import write_tfjs_bundle
    from converter.export.layers import keras_to_layers_model
    from converter.export.tfjs import ExportOptions
    from converter.images import load_rgb
    from converter.model import ConvertedModel, TensorSpec
    from converter.parity_run import tensorflow_vs_tfjs
    from retrain.data import read_csv, scan_folder, split
    from retrain.features import FeatureExtractor, cached_features
    from retrain.train import metrics, raw_pixel_baseline, train_head

    check_writable(out, overwrite)
    seconds = {}
    t = time.perf_counter()
    backbone = ConvertedModel.load(model_dir)
    backbone.preprocessing = _preprocessing(backbone)
    dataset = read_csv(data) if str(data).endswith(".csv") else scan_folder(data)
    parts = split(dataset, val_split, test_split, config.seed)
    fx = FeatureExtractor(backbone, feature_node)
    seconds["load"] = time.perf_counter() - t

    t = time.perf_counter()
    paths = [p for p, _ in dataset.items]
    feats, ok, failed = cached_features(fx, paths, Path(cache_dir or default_cache_dir()))
    seconds["features"] = time.perf_counter() - t
    skipped = dataset.skipped + sorted(failed.items())
    y = np.array([label for _, label in dataset.items])
    idx = {k: [i for i in v if ok[i]] for k, v in parts.items()}
    if not idx["train"] or not idx["val"]:
        raise InputError("No readable training or validation images are left")

    t = time.perf_counter()
    head, history = train_head(feats[idx["train"]], y[idx["train"]], feats[idx["val"]], y[idx["val"]], len(dataset.labels), config)
    seconds["train_head"] = time.perf_counter() - t
    test_idx = idx["test"] or idx["val"]
    predicted = head.predict(feats[test_idx], verbose=0).argmax(1)
    report = {
        "backbone": {"model_dir": str(model_dir), "feature_node": fx.node, "feature_dim": fx.dim},
        "dataset": {"labels": dataset.labels, "counts": dataset.counts(), "split": {k: len(v) for k, v in idx.items()},
                    "evaluated_on": "test" if idx["test"] else "val (no test split)"},
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
        "config": dataclasses.asdict(config),
        "history": history,
        "test": metrics(y[test_idx], predicted, dataset.labels),
    }
    if baseline and idx["test"]:
        t = time.perf_counter()
        train_images = [load_rgb(paths[i]) for i in idx["train"]]
        test_images = [load_rgb(paths[i]) for i in idx["test"]]
        report["baseline_raw_pixels_accuracy"] = raw_pixel_baseline(train_images, y[idx["train"]], test_images, y[idx["test"]], seed=config.seed)
        seconds["baseline"] = time.perf_counter() - t

    with tempfile.TemporaryDirectory(), atomic_output_dir(out, overwrite) as tmp:
        t = time.perf_counter()
        (inp,) = backbone.inputs
        _combined_saved_model(fx, head, tmp / "saved_model", inp.name)
        classes = len(dataset.labels)
        model = ConvertedModel(
            tmp, inputs=[inp], outputs=[TensorSpec("probabilities", [None, classes], "float32")],
            source={"format": "retrained", "path": str(Path(out)), "backbone": str(model_dir), "name": Path(out).name},
            preprocessing=backbone.preprocessing, labels=dataset.labels,
        )
        model.save()
        written = write_tfjs_bundle(model, tmp / "tfjs", ExportOptions())
        keras_to_layers_model(head, tmp / "tfjs" / "head")
        report["tfjs"] = {"bytes": written["bytes"], "passes": written["passes"], "head_layers_model": "tfjs/head/model.json"}
        seconds["export"] = time.perf_counter() - t
        if verify:
            parity = tensorflow_vs_tfjs(model, tmp / "tfjs")
            report["parity_tfjs"] = parity.to_dict()
            if not parity.ok:
                raise ParityError([parity])
        report["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        from retrain.report import write_report_html

        write_report_html(report, tmp)
    model.directory = Path(out)
    held_out = [(paths[i], dataset.labels[y[i]]) for i in test_idx]
    return {"report": report, "model": model, "bundle": Path(out) / "tfjs", "held_out": held_out}
