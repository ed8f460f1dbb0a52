"""One epoch loop for both training phases: early stopping, best-epoch restore, a checkpoint each epoch.

A checkpoint (``.npz``, written atomically) holds every variable (model and optimizer), the
best epoch's model weights, the history and the early-stopping counters. Each epoch's data
order and augmentation derive from ``(seed, epoch)``, so a run resumed from a checkpoint
(after ``kill -9`` too) continues exactly where the last finished epoch left it.

Example:
    >>> history = fit(FitSpec("head", model_vars, opt_vars, run_epoch, validate, epochs=100, patience=10),
    ...               checkpoint=Path("run/phase1.npz"), resume=True)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass
class FitSpec:
    """What ``fit`` trains.

    Args:
        name: shown on the progress bar and in messages ("head", "fine-tune").
        model_variables: weights restored from the best epoch at the end.
        other_variables: saved and restored on resume, not rolled back (optimizer state).
        run_epoch: ``run_epoch(epoch) -> {"loss": float, "accuracy": float}`` trains one epoch.
        validate: ``validate() -> {"loss": float, "accuracy": float}`` on the validation split; ``None``
            when there is none (a refit on every image): the last epoch is kept.
        epochs, patience: the maximum epochs; epochs without a better validation score before stopping.
        monitor: ``"loss"`` (lower validation loss is better) or ``"accuracy"`` (higher validation
            accuracy, ties broken by lower loss).
        start: the validation result of the weights as they are (epoch 0); an epoch must beat it to be
            kept, so when none does the starting weights are restored. ``None``: any first epoch counts.
        restore_best: ``False``: a fixed schedule; every epoch runs and the last one's weights are kept
            (validation is only recorded, so a held-out score of the result is not a selected one).
    """

    name: str
    model_variables: list
    other_variables: list
    run_epoch: Callable[[int], dict]
    validate: Callable[[], dict] | None
    epochs: int
    patience: int
    monitor: str = "loss"
    start: dict | None = None
    restore_best: bool = True

    def score(self, result: dict) -> list:
        """Larger is better."""
        if self.monitor == "accuracy":
            return [float(result["accuracy"]), -float(result["loss"])]
        return [-float(result["loss"])]


def _previous(path: Path) -> Path:
    return path.with_name(path.stem + ".previous.npz")


def _save(path: Path, spec: FitSpec, best: list, meta: dict) -> None:
    """Write the checkpoint through a temporary file; the one before stays as ``NAME.previous.npz``."""
    arrays = {f"v{i}": np.asarray(v.numpy()) for i, v in enumerate(spec.model_variables + spec.other_variables)}
    arrays.update({f"best{i}": b for i, b in enumerate(best)})
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    if path.exists():
        os.replace(path, _previous(path))
    os.replace(tmp, path)


def _read_checkpoint(path: Path, spec: FitSpec) -> tuple[list, list, dict]:
    """Every array of a checkpoint, checked against the variables before any is assigned.

    Raises:
        ValueError: (and zipfile/OS errors) a truncated or foreign file, a missing array, a wrong shape.
    """
    variables = spec.model_variables + spec.other_variables
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        values = [np.asarray(data[f"v{i}"]) for i in range(len(variables))]
        best = [np.asarray(data[f"best{i}"]) for i in range(len(spec.model_variables))]
    for v, value in zip(variables + spec.model_variables, values + best):
        if tuple(value.shape) != tuple(v.shape):
            raise ValueError(f"array of shape {value.shape} for a variable of shape {tuple(v.shape)}")
    if not {"epoch", "history", "done", "wait"} <= set(meta):
        raise ValueError("no training state in it")
    return values, best, meta


def _load(path: Path, spec: FitSpec, log, owner: bool = True) -> tuple[list, dict] | None:
    """Restore the newest readable checkpoint (``path``, else the one before); ``None`` when neither is.

    A damaged checkpoint is named and set aside as ``NAME.damaged.npz`` (by its ``owner``, the worker
    that writes checkpoints; the others only skip it), never fatal: training resumes from the one
    before it, or starts over.
    """
    for candidate in (path, _previous(path)):
        if not candidate.exists():
            continue
        try:
            values, best, meta = _read_checkpoint(candidate, spec)
        except Exception as e:  # noqa: BLE001 - any unreadable file is set aside, whatever numpy raises
            if not owner:
                continue
            damaged = candidate.with_name(candidate.stem + ".damaged.npz")
            os.replace(candidate, damaged)
            log(f"note: checkpoint '{candidate}' is damaged ({type(e).__name__}: {str(e)[:120]}); "
                f"set aside as '{damaged.name}'")
            continue
        for v, value in zip(spec.model_variables + spec.other_variables, values):
            v.assign(value)
        return best, meta
    return None


def fit(spec: FitSpec, checkpoint: Path | None = None, resume: bool = False, log=print, save: bool = True) -> dict:
    """Train until ``spec.epochs`` or early stopping; restore the best epoch; return the history.

    Args:
        save: write ``checkpoint`` each epoch (``False``: a worker other than the chief, which only
            reads the chief's checkpoint on ``resume``: every worker resumes from the same epoch).

    Returns:
        ``{"loss": [...], "accuracy": [...], "val_loss": [...], "val_accuracy": [...],
        "best_epoch": int (0: no epoch beat ``spec.start``), "best_val_loss", "best_val_accuracy",
        "monitor", "resumed_from_epoch": int | None}``.
    """
    start = spec.start or {"loss": float("inf"), "accuracy": float("-inf")}
    meta = {"epoch": 0, "history": {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []},
            "best_loss": float(start["loss"]), "best_accuracy": float(start["accuracy"]),
            "best_score": spec.score(start), "best_epoch": 0, "wait": 0, "done": False}
    best = [np.asarray(v.numpy()) for v in spec.model_variables]
    resumed = None
    loaded = _load(checkpoint, spec, log, owner=save) if resume and checkpoint is not None else None
    if loaded:
        best, meta = loaded
        resumed = meta["epoch"]
        log(f"{spec.name}: resumed after epoch {resumed}" + (" (already finished)" if meta["done"] else ""))
    elif resume and checkpoint is not None:
        log(f"{spec.name}: no usable checkpoint; training from the first epoch")
    while not meta["done"] and meta["epoch"] < spec.epochs and meta["wait"] < spec.patience:
        epoch = meta["epoch"]
        train = spec.run_epoch(epoch)
        val = spec.validate() if spec.validate is not None else None
        for key, value in (("loss", train["loss"]), ("accuracy", train["accuracy"])) + (
                (("val_loss", val["loss"]), ("val_accuracy", val["accuracy"])) if val else ()):
            meta["history"][key].append(float(value))
        meta["epoch"] = epoch + 1
        if not spec.restore_best or val is None:
            meta.update(best_epoch=epoch + 1, wait=0, **({"best_loss": float(val["loss"]),
                                                          "best_accuracy": float(val["accuracy"])} if val else {}))
            best = [np.asarray(v.numpy()) for v in spec.model_variables]
        elif spec.score(val) > meta["best_score"]:
            meta.update(best_loss=float(val["loss"]), best_accuracy=float(val["accuracy"]), best_score=spec.score(val),
                        best_epoch=epoch + 1, wait=0)
            best = [np.asarray(v.numpy()) for v in spec.model_variables]
        else:
            meta["wait"] += 1
        if checkpoint is not None and save:
            _save(checkpoint, spec, best, meta)
    for v, b in zip(spec.model_variables, best):
        v.assign(b)
    meta["done"] = True
    if checkpoint is not None and save:
        _save(checkpoint, spec, best, meta)
    return {**meta["history"], "best_epoch": meta["best_epoch"], "best_val_loss": meta["best_loss"],
            "best_val_accuracy": meta["best_accuracy"], "monitor": spec.monitor, "resumed_from_epoch": resumed}
