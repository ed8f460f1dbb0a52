"""Held-out evaluation that never trains on what it scores, and the head that is delivered.

Small data sets (up to ``kfold_max_images``) are scored by k-fold cross-validation: every image
is predicted by a head trained without its fold, and that head's own settings (the L2 strength,
linear or hidden layer) are chosen by cross-validation on its training folds only (nested), so
the estimate chose nothing. Larger ones keep one fixed, stratified test split. Fold 1 (or the
test split) is the *check* split: the one model trained without it is the one fine-tuning is
judged on and exported a second time to be scored in TensorFlow and in TF.js. The delivered
head is then chosen and fitted the same way on every image (``refit``).

These are plain functions of ``(features, labels, config)``.

Example:
    >>> plan = plan_evaluation(y, TrainConfig())
    >>> held = held_out_heads(x, y, classes=5, plan=plan, config=TrainConfig())
    >>> held["accuracy"], plan.describe()
    (0.71, '5-fold cross-validation over 857 images (nested: ...)')
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from converter.errors import InputError
from retrain.linear_probe import (
    LinearProbe,
    best_l2,
    choose_and_fit,
    cross_validate_l2,
    class_balanced_weights,
    fit_softmax_regression,
    stratified_folds,
)
from retrain.train import head_from_probe, train_head


@dataclass
class EvaluationPlan:
    """Which images score which model.

    Args:
        kind: ``"k-fold"`` or ``"test split"``.
        folds: disjoint position arrays; each is scored by a model trained on all the others
            (``"test split"``: one, the test split).
        images: how many images the plan covers.
    """

    kind: str
    folds: list[np.ndarray]
    images: int

    @property
    def check(self) -> np.ndarray:
        """The positions the check model (trained without them) is scored on: fold 1 or the test split."""
        return self.folds[0]

    @property
    def check_training(self) -> np.ndarray:
        """The positions the check model trains on."""
        return np.setdiff1d(np.arange(self.images), self.check)

    def scored(self) -> np.ndarray:
        """Every position some held-out model predicts."""
        return np.sort(np.concatenate(self.folds))

    def describe(self) -> str:
        if self.kind == "k-fold":
            return (f"{len(self.folds)}-fold cross-validation over {self.images} images: each image predicted by a head "
                    "trained without its fold, whose settings were chosen on its training folds only")
        return f"a fixed test split of {len(self.check)} of {self.images} images, never trained on or chosen by"


def plan_evaluation(y: np.ndarray, config, test_positions: np.ndarray | None = None,
                    test_fraction: float = 0.15) -> EvaluationPlan:
    """k-fold up to ``config.kfold_max_images`` images, else a fixed stratified test split.

    Args:
        y: labels of the usable images.
        config: ``TrainConfig`` (``folds``, ``kfold_max_images``, ``seed``).
        test_positions: the user's own test split (``train/ val/ test/`` folders): always used as given.
        test_fraction: the share of each class in a test split made here.

    Raises:
        InputError: a class has fewer than two images (nothing could be held out of it).
    """
    counts = np.bincount(y)
    if test_positions is not None and len(test_positions):
        return EvaluationPlan("test split", [np.sort(np.asarray(test_positions, int))], len(y))
    small = [str(c) for c in np.flatnonzero(counts < 2)]
    if small:
        raise InputError(f"Held-out evaluation needs at least 2 images per class; class index(es) {small} have "
                         f"fewer (counts {counts.tolist()})")
    if len(y) <= config.kfold_max_images:
        k = int(min(config.folds, counts[counts > 0].min()))
        return EvaluationPlan("k-fold", stratified_folds(y, max(k, 2), config.seed), len(y))
    rng = np.random.default_rng(config.seed)
    test = [rng.permutation(np.flatnonzero(y == c))[: max(1, int(round(n * test_fraction)))]
            for c, n in enumerate(counts) if n]
    return EvaluationPlan("test split", [np.sort(np.concatenate(test))], len(y))


class KerasHead:
    """A trained Keras head with the ``LinearProbe`` interface (``predict_proba``)."""

    def __init__(self, model, history: dict):
        self.model, self.history = model, history

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.model(np.asarray(x, np.float32), training=False).numpy()


def _hidden_head(x, y, classes: int, config) -> KerasHead:
    """The hidden-layer head (Adam, dropout), early-stopped on a stratified 15 % of ``(x, y)``."""

    folds = stratified_folds(y, max(2, min(7, int(np.bincount(y)[np.bincount(y) > 0].min()))), config.seed)
    stop, fit = folds[0], np.setdiff1d(np.arange(len(y)), folds[0])
    model, history = train_head(x[fit], y[fit], x[stop], y[stop], classes, config, progress=False, log=lambda m: None)
    return KerasHead(model, history)


def _inner_folds(y: np.ndarray, config) -> list[np.ndarray]:
    """The folds that choose a head's settings: 3 (a choice among a few strengths needs no more)."""
    counts = np.bincount(y)
    return stratified_folds(y, max(2, int(min(3, config.folds, counts[counts > 0].min()))), config.seed + 1)


@dataclass
class ColumnsHead:
    """A head chosen between two feature sets: it reads the first ``columns`` feature columns.

    Multi-level features (``FeatureExtractor(multi_level=True)``) start with the default features;
    the head on the default ones reads those columns only, and is exported on a backbone without taps.

    Args:
        head: the chosen ``LinearProbe`` or ``KerasHead``.
        columns: how many leading feature columns it reads.
        feature_set: ``"default"`` or ``"multi-level"``.
        cv: ``{feature set: {"accuracy", "loss"}}``: each set's linear head, cross-validated on the inner folds.
    """

    head: object
    columns: int
    feature_set: str
    cv: dict

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.head.predict_proba(np.asarray(x)[:, : self.columns])


def head_columns(head) -> int | None:
    """How many leading feature columns ``head`` reads (``None``: all)."""
    return head.columns if isinstance(head, ColumnsHead) else None


def choose_head(x, y, classes: int, config, base_columns: int | None = None):
    """The head for ``(x, y)``, every choice made by cross-validation on ``(x, y)`` alone.

    The linear probe's strength is chosen over ``L2_GRID`` (or ``config.l2``); with ``config.hidden``
    the hidden-layer head competes on the same folds and wins only with a higher held-out accuracy.
    With ``base_columns`` (multi-level features: the default ones are the first ``base_columns``),
    the linear heads on the default and on all columns compete first, on the same folds: all columns
    win only with a higher accuracy (ties: a lower cross-entropy).

    Returns:
        A ``LinearProbe`` (its ``cv``: the selection) or a ``KerasHead``; both have ``predict_proba``;
        with ``base_columns``, a ``ColumnsHead`` around the winner.
    """
    folds = _inner_folds(y, config)
    if base_columns is None or base_columns >= x.shape[1]:
        return _linear_or_hidden(x, y, classes, config, folds, _linear(x, y, classes, config, folds))
    sets = {"default": base_columns, "multi-level": x.shape[1]}
    cv = {name: _linear_selection(x[:, :c], y, classes, config, folds) for name, c in sets.items()}
    best = "multi-level" if _rank(cv["multi-level"][0]) > _rank(cv["default"][0]) else "default"
    columns, (score, l2, grid) = sets[best], cv[best]
    probe = fit_softmax_regression(x[:, :columns], y, classes, l2, class_balanced_weights(y, classes), config.label_smoothing)
    probe.cv = grid  # only the winner is fitted on every image: as choose_and_fit would have
    head = _linear_or_hidden(x[:, :columns], y, classes, config, folds, probe, score["accuracy"])
    return ColumnsHead(head, columns, best, {name: dict(c[0]) for name, c in cv.items()})


def _linear_selection(x, y, classes: int, config, folds) -> tuple[dict, float, dict | None]:
    """The linear head's cross-validated ``{"accuracy", "loss"}`` at its chosen strength, the strength, and
    the whole grid's scores (``None`` with ``config.l2`` given)."""
    if config.l2 is not None:
        return _cv_scores(lambda a, b: _fixed_probe(a, b, classes, config), x, y, folds), config.l2, None
    grid = cross_validate_l2(x, y, classes, folds, label_smoothing=config.label_smoothing)
    l2 = best_l2(grid)
    return grid[l2], l2, grid


def _rank(score: dict) -> tuple:
    return score["accuracy"], -score["loss"]


def _linear(x, y, classes: int, config, folds) -> LinearProbe:
    if config.l2 is not None:
        return _fixed_probe(x, y, classes, config)
    return choose_and_fit(x, y, classes, folds, label_smoothing=config.label_smoothing)


def _linear_cv(probe: LinearProbe, x, y, classes: int, config, folds) -> dict:
    """The cross-validated ``{"accuracy", "loss"}`` of the linear head ``probe`` was chosen as."""
    if probe.cv:
        return dict(probe.cv[probe.l2])
    return _cv_scores(lambda a, b: _fixed_probe(a, b, classes, config), x, y, folds)


def _linear_or_hidden(x, y, classes: int, config, folds, probe, linear_accuracy: float | None = None):
    """``probe``, or the hidden-layer head (``config.hidden``) when it has the higher accuracy on ``folds``."""
    if not config.hidden:
        return probe
    if linear_accuracy is None:
        linear_accuracy = _linear_cv(probe, x, y, classes, config, folds)["accuracy"]
    hidden_accuracy = _cv_scores(lambda a, b: _hidden_head(a, b, classes, config), x, y, folds)["accuracy"]
    return _hidden_head(x, y, classes, config) if hidden_accuracy > linear_accuracy else probe


def _fixed_probe(x, y, classes: int, config) -> LinearProbe:
    return fit_softmax_regression(x, y, classes, config.l2, class_balanced_weights(y, classes), config.label_smoothing)


def keras_head(head, classes: int, config):
    """The Keras model of a chosen head (what is exported, fine-tuned and written as a TF.js layers model)."""

    if isinstance(head, ColumnsHead):
        return keras_head(head.head, classes, config)
    if isinstance(head, KerasHead):  # a copy: fine-tuning trains it in place
        import keras

        model = keras.models.clone_model(head.model)
        model.set_weights(head.model.get_weights())
        return model
    return head_from_probe(head, classes, config)


def _cv_scores(train, x, y, folds) -> dict:
    """``{"accuracy", "loss"}`` over ``folds``, each image scored by a ``train(x, y)`` head without its fold."""
    correct, loss = 0, 0.0
    for held in folds:
        rest = np.setdiff1d(np.arange(len(y)), held)
        p = train(x[rest], y[rest]).predict_proba(x[held])
        correct += int((p.argmax(1) == y[held]).sum())
        loss -= float(np.log(np.clip(p[np.arange(len(held)), y[held]], 1e-7, 1)).sum())
    return {"accuracy": correct / len(y), "loss": loss / len(y)}


def held_out_heads(x, y, classes: int, plan: EvaluationPlan, config, log=print, base_columns: int | None = None) -> dict:
    """Train one head per fold of ``plan`` without that fold; predict the fold.

    ``base_columns``: multi-level features, whose first columns are the default ones; each fold's head
    chooses between the two sets on its own training folds (``choose_head``), so the estimate includes that choice.

    Returns:
        ``{"probabilities": (N, classes) float32, NaN where not scored, "heads": [one per fold],
        "accuracy": over the scored images, "check_accuracy": the check model's on its split}``.
    """
    probabilities = np.full((len(y), classes), np.nan, np.float32)
    heads = []
    for i, held in enumerate(plan.folds):
        rest = np.setdiff1d(np.arange(len(y)), held)
        head = choose_head(x[rest], y[rest], classes, config, base_columns)
        probabilities[held] = head.predict_proba(x[held])
        heads.append(head)
    scored = plan.scored()
    correct = probabilities[scored].argmax(1) == y[scored]
    check = probabilities[plan.check].argmax(1) == y[plan.check]
    log(f"head: held-out accuracy {correct.mean():.3f} ({plan.describe()})")
    return {"probabilities": probabilities, "heads": heads, "accuracy": float(correct.mean()),
            "check_accuracy": float(check.mean())}


def describe_head(head) -> dict:
    """What the report says about a chosen head."""
    if isinstance(head, ColumnsHead):
        return {**describe_head(head.head), "features": describe_feature_choice(head)}
    if isinstance(head, LinearProbe):
        cv = {f"{k:g}": {m: round(v, 4) for m, v in s.items()} for k, s in (head.cv or {}).items()}
        return {"kind": "linear (L2 softmax regression, L-BFGS)", "l2": head.l2,
                "chosen_by": "lowest cross-validated cross-entropy" if head.cv else "given (--l2)", "cv": cv}
    return {"kind": "hidden layer (Adam, dropout, early stopping)", "chosen_by": "higher cross-validated accuracy than linear",
            "best_epoch": head.history["best_epoch"]}


def describe_feature_choice(head: ColumnsHead) -> dict:
    """Which feature set a ``ColumnsHead`` chose, and both sets' inner cross-validation scores."""
    return {"used": head.feature_set, "columns": head.columns,
            "chosen_by": "higher cross-validated accuracy of the linear head (ties: lower cross-entropy); "
                         "all columns must beat the default ones",
            "cv": {name: {m: round(v, 4) for m, v in s.items()} for name, s in head.cv.items()}}
