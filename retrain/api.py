"""``retrain``: transfer learning on a converted model — a head on frozen features, then optional fine-tuning.

Example:
    >>> from retrain import retrain
    >>> result = retrain("out/effnet", "photos/", "out/pets")
    >>> result.report["test"]["accuracy"]
    0.93
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converter.atomic import check_writable, remove_stale_files
from converter.cache import cache_root
from converter.errors import InputError
from converter.model import ConvertedModel, Preprocessing
from retrain.data import read_csv, scan_folder
from retrain.distributed import SINGLE, Workers
from retrain.evaluation import describe_head, head_columns, keras_head, plan_evaluation
from retrain.feature_store import extract_to_store
from retrain.features import FeatureExtractor, cached_features
from retrain.normalization import missing_normalization_warning
from retrain.phases import fine_tune_phase
from retrain.progress import Progress
from retrain.report_gallery import confident_mistakes
from retrain.streamed_phase import StoreRows, baseline_sample, frozen_head_phase
from retrain.run_state import discard_unless_checkpointed, fingerprint, prepare_run_dir, run_dir
from retrain.train import TrainConfig, raw_pixel_baseline
from retrain.writing import score_check_model, write_outputs

__all__ = ["retrain", "RetrainResult", "TrainConfig"]


@dataclass(frozen=True)
class RetrainResult:
    """What ``retrain`` wrote.

    Args:
        report: ``report.json``'s content (held-out metrics, how they were measured, timings, parity).
        model: the ``ConvertedModel`` of ``out`` (image in, ``probabilities`` out).
        bundle: its TF.js bundle (``out/tfjs``).
        held_out: ``(path, label)`` of the check images, which the check model never trained on.
    """

    report: dict
    model: ConvertedModel
    bundle: Path
    held_out: list


def default_cache_dir() -> Path:
    """Where features are cached: ``cache_root() / "features"`` (``~/.cache/transferjs/features``)."""
    return cache_root() / "features"


def _preprocessing(model, overrides: dict | None = None):
    """The model's preprocessing (its metadata, else its input size and [0, 1] pixels), with ``overrides``."""
    p = model.preprocessing
    if p is None or p.size is None:
        (inp,) = model.inputs
        size = tuple(inp.shape[1:3] if inp.layout == "NHWC" else inp.shape[2:4])
        p = dataclasses.replace(p, size=size) if p is not None else Preprocessing(size=size)
    return dataclasses.replace(p, **(overrides or {}))


def retrain(model_dir, data, out, config: TrainConfig = TrainConfig(), test_split: float = 0.15,
            feature_node: str | None = None, cache_dir=None, overwrite: bool = False, baseline: bool = True,
            verify: bool = True, resume: bool = False, progress: bool = True, log=print,
            preprocessing: dict | None = None, allow_outside: bool = False, before_training=None,
            workers: Workers | None = None) -> RetrainResult:
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
        allow_outside: a CSV may name images outside its own folder (by default it may not, as an
            ONNX file may not name external data outside its folder).
        before_training: called once the model folder and the data are checked, before TensorFlow starts
            (the CLI makes TensorFlow's ops deterministic there; bad input is answered in a second).
        workers: run as one of several workers (``distributed.join_cluster()``; every worker calls
            ``retrain`` with the same arguments): features extracted in shards into the shared cache,
            the head fitted and fine-tuned data-parallel; only the chief (rank 0) writes ``out``
            and the checkpoints; the others return a ``RetrainResult`` without ``model`` and ``bundle``.

    Returns:
        A ``RetrainResult``.

    TensorFlow op determinism is process-wide state, so the library leaves it as the caller set it;
    the CLI turns it on (``tf.config.experimental.enable_op_determinism()``) so that a seed gives
    the same fine-tuning numbers, and ``--resume`` continues them exactly.

    Raises:
        InputError: bad data (before any training), bad feature node.
        ParityError: an exported TF.js bundle differs from its SavedModel.
    """
    check_writable(out, overwrite, (model_dir, data, cache_dir))
    seconds, chief = {}, workers is None or workers.chief
    with _timed(seconds, "load"):
        backbone = _backbone(model_dir, preprocessing, log)
        dataset = read_csv(data, allow_outside) if str(data).endswith(".csv") else scan_folder(data)
        if before_training is not None:
            before_training()
        # Multi-level features are chosen in memory (k-fold); a streamed run keeps the default features.
        multi_level = config.multi_level and workers is None and len(dataset.items) <= config.kfold_max_images
        fx = _feature_extractor(backbone, feature_node, multi_level)
    stack = contextlib.ExitStack()
    with _timed(seconds, "features"):
        x, usable, skipped = _features(fx, dataset, cache_dir, progress, config, stack, workers)
    items = [(dataset.items[i][0], dataset.items[i][1]) for i in usable]
    y = np.array([label for _, label in items], int)
    plan = plan_evaluation(y, config, _given_test_positions(dataset, usable), test_split)
    checkpoints = run_dir(out)
    if chief:
        prepare_run_dir(checkpoints, fingerprint(fx, dataset, plan.folds, config), resume, log)
    with stack, discard_unless_checkpointed(checkpoints):
        with _timed(seconds, "train_head"):
            frozen = frozen_head_phase(x, y, dataset.labels, plan, config, log, workers or SINGLE,
                                       fx.base_dim if fx.taps else None)
        report = _report(model_dir, fx, dataset, skipped, plan, frozen, config)
        report["workers"] = workers.count if workers is not None else 1
        run = _Run(fx, items, y, dataset.labels, plan, config, report, seconds, workers or SINGLE)
        check_model, delivered, shown = _phases(run, frozen, checkpoints, resume, progress, log)
        if not chief:
            workers.barrier()  # the chief writes every output: wait until it has
            return RetrainResult(report, None, None, [])
        if baseline:
            with _timed(seconds, "baseline"):
                _baseline(run, report)
        report["misclassified"] = confident_mistakes(run.paths(shown["positions"]), y[shown["positions"]],
                                                     shown["probabilities"], dataset.labels)
        check_items = [items[i] for i in plan.check]
        if config.refit:  # the delivered model saw the check split: score the check model, exported the same way
            with _timed(seconds, "runtime_check"):
                report["runtime_check"] = score_check_model(backbone, fx, check_model, dataset.labels, check_items)
        delivered_fx = fx.for_columns(head_columns(frozen["delivered_head"]))
        model = write_outputs(out, overwrite, backbone, delivered_fx, delivered, dataset.labels, report, seconds, verify,
                              None if config.refit else check_items)
    shutil.rmtree(checkpoints, ignore_errors=True)
    if workers is not None:
        workers.barrier()  # the others wait for the outputs
    held_out = [(items[i][0], dataset.labels[y[i]]) for i in plan.check]
    return RetrainResult(report, model, Path(out) / "tfjs", held_out)


@dataclass
class _Run:
    """What the phases of one run share."""

    fx: object
    items: list
    y: np.ndarray
    labels: list
    plan: object
    config: TrainConfig
    report: dict
    seconds: dict
    workers: Workers = SINGLE

    def paths(self, positions) -> list:
        return [self.items[i][0] for i in positions]


def _phases(run: _Run, frozen: dict, checkpoints: Path, resume: bool, progress: bool, log):
    """The check and delivered models (frozen head, or fine-tuned when that helps) and the held-out predictions shown."""
    plan, config, classes = run.plan, run.config, len(run.labels)
    shown = {"positions": plan.scored(), "probabilities": frozen["held"]["probabilities"][plan.scored()]}
    check_model = (run.fx.for_columns(head_columns(frozen["check_head"])).extract,
                   keras_head(frozen["check_head"], classes, config))
    delivered = (run.fx.for_columns(head_columns(frozen["delivered_head"])).extract,
                 keras_head(frozen["delivered_head"], classes, config))
    if not config.fine_tune:
        return check_model, delivered, shown
    with _timed(run.seconds, "fine_tune"):
        tuned = fine_tune_phase(run.fx, run.items, run.labels, plan, frozen, config, checkpoints, resume, progress, log,
                                run.workers)
    run.report["fine_tune"] = tuned["summary"]
    if tuned["summary"]["kept"]:
        run.report["test"] = tuned["summary"].pop("test")
        shown = {"positions": plan.check, "probabilities": tuned["check_probabilities"]}
        run.report["evaluation"]["delivered_estimate"] = "fine-tuned, on the check split"
    return tuned["check"], tuned["delivered"], shown


@contextlib.contextmanager
def _timed(seconds: dict, stage: str):
    t = time.perf_counter()
    try:
        yield
    finally:
        seconds[stage] = time.perf_counter() - t


def _backbone(model_dir, overrides: dict | None, log):
    """The converted model with the preprocessing retraining uses (warning once when a known normalization is missing)."""
    backbone = ConvertedModel.load(model_dir)
    warning = missing_normalization_warning(backbone, overrides)
    if warning:
        log(warning)
    backbone = dataclasses.replace(backbone, preprocessing=_preprocessing(backbone, overrides))
    return _input_at_size(backbone, tuple(backbone.preprocessing.size))


def _input_at_size(model, size: tuple):
    """``model`` with its image input's height and width set to ``size`` (what retraining trains and serves at).

    A converted CNN that ends in global pooling runs at other sizes (the graph is imported with the new
    input); emoji drawn at 64x64 lose nothing at 128 and cost a third of 224 to fine-tune. Whether the
    graph really runs there is checked when the feature extractor is built.

    Example:
        >>> _input_at_size(model, (128, 128)).inputs[0].shape
        [None, 128, 128, 3]
    """
    (inp,) = model.inputs
    axes = (1, 2) if (inp.layout or "NHWC") == "NHWC" else (2, 3)
    if len(inp.shape) != 4 or tuple(inp.shape[a] for a in axes) == size:
        return model
    shape = list(inp.shape)
    shape[axes[0]], shape[axes[1]] = size
    return dataclasses.replace(model, inputs=[dataclasses.replace(inp, shape=shape)])


def _feature_extractor(backbone, feature_node, multi_level: bool = False):
    """``FeatureExtractor(backbone, feature_node, multi_level)``; a graph that cannot run at the requested size is an InputError."""
    try:
        return FeatureExtractor(backbone, feature_node, multi_level)
    except (ValueError, TypeError) as e:  # TF's shape errors when the imported graph is traced at another size
        if "shape" not in str(e).lower() and "dimension" not in str(e).lower():
            raise
        (inp,) = backbone.inputs
        raise InputError(f"The model's graph does not run at --image-size {backbone.preprocessing.size[0]} "
                         f"(input '{inp.name}' shape {inp.shape}): fixed shapes inside it; convert the model "
                         f"at that size, or retrain at its own size. ({str(e).splitlines()[0][:160]})") from e


def _baseline(run: _Run, report: dict) -> None:
    """The raw-pixel baseline's accuracy (on a seeded sample of each side above ``BASELINE_MAX_IMAGES``)."""
    plan, y, seed = run.plan, run.y, run.config.seed
    train, test = baseline_sample(plan.check_training, seed), baseline_sample(plan.check, seed + 1)
    report["baseline_raw_pixels_accuracy"] = raw_pixel_baseline(run.paths(train), y[train], run.paths(test), y[test], seed=seed)
    if len(train) < len(plan.check_training) or len(test) < len(plan.check):
        report["baseline_raw_pixels_sample"] = {"train": len(train), "test": len(test),
                                                "of": [len(plan.check_training), len(plan.check)]}


def _features(fx, dataset, cache_dir, progress: bool, config, stack: contextlib.ExitStack, workers=None):
    """Every image's features (from the cache when known); positions of the readable ones; all skipped files.

    Up to ``config.kfold_max_images`` images: an (N, dim) array. Above, or with ``workers``: a ``StoreRows``
    over a feature store in a temporary folder of the cache (removed when ``stack`` closes), read chunk by
    chunk; each worker first computes its shard into the (shared) cache.
    """
    paths = [p for p, _ in dataset.items]
    bar = Progress("features", len(paths), enabled=progress)
    first = []  # the first report counts the cached images

    def advance(done: int, total: int) -> None:
        first.append(done)
        bar.update(done - bar.done)

    cache, streamed = Path(cache_dir or default_cache_dir()), workers is not None or len(paths) > config.kfold_max_images
    if streamed:
        folder = Path(stack.enter_context(_store_folder(cache)))
        if workers is not None and workers.count > 1:
            extract_to_store(fx, workers.shard(paths), cache, folder / "shard", progress=advance)
            shutil.rmtree(folder / "shard")
            workers.barrier()  # every image's features are in the shared cache now
        store, failed = extract_to_store(fx, paths, cache, folder / "all", progress=None if first else advance)
        ok = store.ok
    else:
        feats, ok, failed = cached_features(fx, paths, cache, progress=advance)
    bar.close(f"{first[0] if first else 0} from the cache")
    usable = np.flatnonzero(ok)
    if len(usable) < 2:
        raise InputError(f"Only {len(usable)} readable image(s) are left; retraining needs images of at least 2 classes")
    x = StoreRows(store, usable) if streamed else feats[usable]
    return x, usable, dataset.skipped + sorted(failed.items())


def _store_folder(cache: Path):
    """A temporary folder for this run's feature store in ``cache``; those of this machine's dead runs go.

    Named with the host and process id: on storage shared by a cluster only this machine's own
    leftovers (a ``kill -9``) are judged by their process id.
    """
    prefix = f".feature-store-{socket.gethostname()}.partial-"
    cache.mkdir(parents=True, exist_ok=True)
    remove_stale_files(cache, prefix + "*")
    return tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-", dir=cache)


def _given_test_positions(dataset, usable: np.ndarray):
    """The user's test/ folder (train/ val/ test/ layout) as positions among the usable images, else None."""
    given = (dataset.given_splits or {}).get("test")
    if not given:
        return None
    return np.flatnonzero(np.isin(usable, given))


def _report(model_dir, fx, dataset, skipped, plan, frozen, config) -> dict:
    statement = plan.describe()
    delivered = ("The exported model was then trained on all images with the settings chosen the same way"
                 if config.refit else "The exported model is the one trained without the check split (--no-refit)")
    check = "fold 1" if plan.kind == "k-fold" else "the test split"
    delivered_head = frozen["delivered_head"]
    return {
        "backbone": {"model_dir": str(model_dir), "feature_node": fx.node,
                     "feature_dim": fx.for_columns(head_columns(delivered_head)).dim,
                     "preprocessing": dataclasses.asdict(fx.model.preprocessing)},
        "features": _feature_report(fx, frozen),
        "dataset": {"labels": dataset.labels, "counts": dataset.counts(),
                    "split": {"check_training": len(plan.check_training), "check": len(plan.check)},
                    "evaluated_on": f"{len(plan.folds)}-fold cross-validation" if plan.kind == "k-fold" else "test split"},
        "evaluation": {"kind": plan.kind, "folds": len(plan.folds), "images": plan.images, "statement": statement,
                       "check": check, "check_images": len(plan.check), "refit": config.refit, "delivered": delivered,
                       "frozen": f"frozen head, {statement.split(':')[0]}", "delivered_estimate": "frozen head"},
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
        "config": dataclasses.asdict(config),
        "head": describe_head(frozen["delivered_head"]),
        "history": getattr(getattr(delivered_head, "head", delivered_head), "history", {}),
        "test": frozen["metrics"],
        "test_frozen_features": {"accuracy": frozen["held"]["accuracy"], "check_accuracy": frozen["held"]["check_accuracy"]},
    }




def _feature_report(fx, frozen) -> dict:
    """Which features the delivered model uses, the taps considered, and how the held-out heads chose."""
    delivered = frozen["delivered_head"]
    if not fx.taps:
        return {"used": "default", "dim": fx.dim, "multi_level": "not considered (--no-multi-level, --feature-node, "
                "a streamed data set, or no stage outputs found)"}
    choice = describe_head(delivered)["features"]
    folds = [getattr(h, "feature_set", "default") for h in frozen["held"]["heads"]]
    return {"used": choice["used"], "dim": fx.for_columns(head_columns(delivered)).dim, "default_dim": fx.base_dim,
            "multi_level_dim": fx.dim, "taps": fx.taps, "cv": choice["cv"], "chosen_by": choice["chosen_by"],
            "held_out_folds_chose": folds}
