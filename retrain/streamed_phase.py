"""Phase 1 for data sets past ``kfold_max_images``: the head fitted from the feature store, chunk by chunk.

``retrain`` keeps features in memory up to ``TrainConfig.kfold_max_images`` images (k-fold
cross-validation, unchanged); above that it writes them to a ``FeatureStore`` and the plan is a
fixed test split, so phase 1 is two streamed fits: the check head (without the test split, its
strength chosen by 3-fold CV on its own training images) and the delivered head (on every image,
chosen the same way). On several workers (``distributed``) every plan is streamed, k-fold too. Peak memory does not grow with the number of images; only per-image labels
and positions do. A hidden-layer head (``--hidden``) is not streamed: its features are gathered.

Example:
    >>> x = StoreRows(store, usable)               # what retrain passes instead of an (N, dim) array
    >>> frozen = frozen_head_phase(x, y, labels, plan, config)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retrain.distributed import SINGLE, Workers
from retrain.evaluation import EvaluationPlan, _inner_folds
from retrain.phases import frozen_phase
from retrain.streamed_probe import choose_streamed, predict_streamed
from retrain.train import metrics

# The raw-pixel baseline holds 32 x 32 x 3 floats per image (12 KB): above this many images per side
# it is trained and scored on a seeded random sample of them, and the report says so.
BASELINE_MAX_IMAGES = 5000


@dataclass(frozen=True)
class StoreRows:
    """The usable images' features: ``store`` rows ``rows[i]`` for plan position ``i``."""

    store: object
    rows: np.ndarray

    def gather(self, positions=None) -> np.ndarray:
        """Into memory (for the heads that are not streamed)."""
        return self.store.take(self.rows if positions is None else self.rows[positions])


def frozen_head_phase(x, y: np.ndarray, labels: list[str], plan: EvaluationPlan, config, log=print,
                      workers: Workers = SINGLE, base_columns: int | None = None) -> dict:
    """``phases.frozen_phase`` on an in-memory array, or streamed from a ``StoreRows``: the same result dict.

    ``base_columns`` (multi-level features, in memory only: ``retrain`` takes no taps for a streamed run).

    Streamed: one head per fold of ``plan`` (trained without it, its strength chosen on its own inner
    folds), then the delivered head on every image; ``workers`` share each fit's sums.
    """
    if not isinstance(x, StoreRows):
        return frozen_phase(x, y, labels, plan, config, log, base_columns)
    if config.hidden:
        log("note: --hidden trains its head in memory: the features of every image are gathered from the store")
        return frozen_phase(x.gather(), y, labels, plan, config, log)
    classes = len(labels)
    probabilities, heads = np.full((len(y), classes), np.nan, np.float32), []
    for held in plan.folds:
        head = _choose(x, np.setdiff1d(np.arange(len(y)), held), y, classes, config, workers)
        probabilities[held] = predict_streamed(head, x.store, x.rows[held])
        heads.append(head)
    scored, check = plan.scored(), plan.check
    accuracy = float((probabilities[scored].argmax(1) == y[scored]).mean())
    where = "features streamed from disk" + (f", {workers.count} workers" if workers.count > 1 else "")
    log(f"head: held-out accuracy {accuracy:.3f} ({plan.describe()}; {where})")
    held = {"probabilities": probabilities, "heads": heads, "accuracy": accuracy,
            "check_accuracy": float((probabilities[check].argmax(1) == y[check]).mean())}
    delivered = _choose(x, np.arange(len(y)), y, classes, config, workers) if config.refit else heads[0]
    return {"held": held, "metrics": metrics(y[scored], probabilities[scored].argmax(1), labels),
            "check_head": heads[0], "delivered_head": delivered}


def _choose(x: StoreRows, positions: np.ndarray, y: np.ndarray, classes: int, config, workers: Workers):
    """The linear head on ``positions`` (sorted), its strength chosen on their own inner folds."""
    positions = np.sort(positions)
    folds = _inner_folds(y[positions], config)
    return choose_streamed(x.store, x.rows[positions], y[positions], classes, folds, config.l2,
                           label_smoothing=config.label_smoothing, workers=workers)


def baseline_sample(positions: np.ndarray, seed: int, limit: int = BASELINE_MAX_IMAGES) -> np.ndarray:
    """``positions``, or a seeded random ``limit`` of them (sorted) when there are more."""
    positions = np.asarray(positions, int)
    if len(positions) <= limit:
        return positions
    return np.sort(np.random.default_rng([seed, len(positions)]).choice(positions, limit, replace=False))
