"""The default head: L2-regularised softmax regression on standardized features, strength by k-fold CV.

A linear probe is the bar a head on pretrained features must clear (a ten-line scikit-learn
script gets it), so the head *is* one, solved to convergence with L-BFGS on the cached
features instead of Adam epochs with dropout and early stopping on a small validation split.
The regularisation strength is chosen by cross-validation on the training images only. The
standardization is folded into the weights, so the exported head is a single dense softmax layer.

Example:
    >>> probe = choose_and_fit(x_train, y_train, classes=5, folds=stratified_folds(y_train, 5, seed=0))
    >>> probe.l2, probe.predict_proba(x_test).argmax(1)
    (0.01, array([3, 0, ...]))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

# Strengths tried, on the mean cross-entropy of standardized features (0.5 * l2 * |W|^2 is added), in
# half decades. On EfficientNet-Lite0 emoji features the cross-validated optimum was 0.1-0.3 with 685
# images and 1-10 with 48; weaker strengths than 0.01 scored lower at every size measured.
L2_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
# Feature scales are floored at this times the mean standard deviation (see StandardizedFeatures).
SCALE_FLOOR = 1.0


@dataclass
class LinearProbe:
    """A fitted softmax regression: ``probabilities = softmax(x @ kernel + bias)`` on raw features.

    Args:
        kernel: (dim, classes) float32, the standardization folded in.
        bias: (classes,) float32.
        l2: the strength it was fitted with.
        cv: ``{l2: {"accuracy", "loss"}}`` of the selection, when it was chosen by cross-validation.
    """

    kernel: np.ndarray
    bias: np.ndarray
    l2: float
    cv: dict | None = None

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities for features ``x`` (N, dim)."""
        return _softmax(np.asarray(x, np.float64) @ self.kernel + self.bias).astype(np.float32)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def class_balanced_weights(y: np.ndarray, classes: int) -> np.ndarray:
    """Per-sample weights, inverse to the class frequency, mean 1: every class counts alike."""
    counts = np.bincount(y, minlength=classes).astype(float)
    per_class = counts.sum() / (classes * np.maximum(counts, 1))
    return per_class[y]


class StandardizedFeatures:
    """Training features standardized once, in the coordinates the solver works in.

    No dimension is scaled up past the mean spread (each scale is floored at the mean of the
    standard deviations): wide channels are brought down to the others, quiet ones keep their small
    spread. Blowing quiet channels up to unit variance (a floor of a tenth of the mean, before)
    lets a channel nearly constant on few training images turn small differences at prediction time
    into large logits: at 10 faces per class (``bench/retrain_quality.py``, lfw_subset) that head
    scored 96.7 % against 100 % with this floor, and no row of the emoji task got worse on average
    than scikit-learn's logistic regression. With fewer images than dimensions the
    optimum lies in the span of the images (the penalty is rotation invariant), so the solver works on
    their ``n`` coordinates in that span: exact, and far cheaper on small data sets.
    """

    def __init__(self, x: np.ndarray):
        x = np.asarray(x, np.float64)
        self.mean, std = x.mean(0), x.std(0)
        self.scale = np.maximum(std, SCALE_FLOOR * std.mean() + 1e-12)
        z = (x - self.mean) / self.scale
        self.basis = None
        if z.shape[0] < z.shape[1]:
            _, singular, vt = np.linalg.svd(z, full_matrices=False)
            self.basis = vt  # (n, dim): orthonormal rows spanning the images
            z = z @ vt.T
        self.z = z

    def to_raw(self, kernel: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Solver coordinates -> weights on raw features."""
        full = self.basis.T @ kernel if self.basis is not None else kernel
        raw = full / self.scale[:, None]
        return raw, bias - self.mean @ raw

    def from_raw(self, kernel: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weights on raw features -> solver coordinates (projected onto the span; a warm start)."""
        full = kernel * self.scale[:, None]
        return (self.basis @ full if self.basis is not None else full), bias + self.mean @ kernel


def fit_softmax_regression(x, y: np.ndarray, classes: int, l2: float, sample_weight=None,
                           label_smoothing: float = 0.0, init: LinearProbe | None = None,
                           max_iter: int = 500) -> LinearProbe:
    """Minimise weighted mean cross-entropy + ``0.5 * l2 * |W|^2`` on standardized ``x`` (L-BFGS).

    Args:
        x: (N, dim) features, or ``StandardizedFeatures`` of them (reused across strengths);
            y: (N,) labels in ``range(classes)``.
        l2: the regularisation strength (the bias is not regularised).
        sample_weight: (N,) weights (default: all 1).
        label_smoothing: targets ``(1 - s) * one_hot + s / classes``.
        init: a probe to start from (warm start along a path of strengths).

    Returns:
        The fitted ``LinearProbe`` on raw (unstandardized) features.

    Example:
        >>> probe = fit_softmax_regression(x, y, classes=3, l2=1e-2)
    """
    from scipy.optimize import minimize

    data = x if isinstance(x, StandardizedFeatures) else StandardizedFeatures(x)
    z = data.z
    n, dim = z.shape
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64)
    w = w / w.sum()
    target = np.full((n, classes), label_smoothing / classes)
    target[np.arange(n), y] += 1.0 - label_smoothing

    def objective(theta):
        kernel, bias = theta[: dim * classes].reshape(dim, classes), theta[dim * classes:]
        logits = z @ kernel + bias
        logits -= logits.max(1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        loss = -(w * (target * log_p).sum(1)).sum() + 0.5 * l2 * (kernel**2).sum()
        g = (np.exp(log_p) - target) * w[:, None]
        return loss, np.concatenate([(z.T @ g + l2 * kernel).ravel(), g.sum(0)])

    theta0 = np.zeros(dim * classes + classes)
    if init is not None:
        kernel0, bias0 = data.from_raw(init.kernel, init.bias)
        theta0[: dim * classes], theta0[dim * classes:] = kernel0.ravel(), bias0
    # One BLAS thread for these skinny products: on a loaded 2-core machine a threaded BLAS made one
    # cross-validation 20x slower (408 s vs 20 s). Scoped: the previous limits are restored on exit.
    with threadpool_limits(limits=1, user_api="blas"):
        result = minimize(objective, theta0, jac=True, method="L-BFGS-B",
                          options={"maxiter": max_iter, "ftol": 1e-6, "gtol": 1e-4})
    kernel, bias = data.to_raw(result.x[: dim * classes].reshape(dim, classes), result.x[dim * classes:])
    return LinearProbe(kernel, bias, l2)


def stratified_folds(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """``k`` disjoint index arrays, each with about ``1/k`` of every class (seeded)."""
    rng = np.random.default_rng(seed)
    folds = [[] for _ in range(k)]
    offset = 0
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        for j, i in enumerate(idx):  # continue the round-robin across classes so folds stay even in size
            folds[(offset + j) % k].append(i)
        offset += len(idx)
    return [np.sort(np.array(f, int)) for f in folds]


def cross_validate_l2(x, y, classes: int, folds: list[np.ndarray], grid=L2_GRID, balanced: bool = True,
                      label_smoothing: float = 0.0) -> dict:
    """Held-out accuracy and cross-entropy of every strength in ``grid``, over ``folds``.

    Returns:
        ``{l2: {"accuracy": float, "loss": float}}`` (each image scored once, by the fold that left it out).
    """
    scores = {}
    for held in folds:
        train = np.setdiff1d(np.arange(len(y)), held)
        weight = class_balanced_weights(y[train], classes) if balanced else None
        data, previous = StandardizedFeatures(x[train]), None
        for l2 in sorted(grid, reverse=True):  # strong to weak: each fit warm-starts the next
            previous = fit_softmax_regression(data, y[train], classes, l2, weight, label_smoothing, previous)
            p = previous.predict_proba(x[held])
            s = scores.setdefault(l2, {"correct": 0.0, "loss": 0.0, "n": 0})
            s["correct"] += float((p.argmax(1) == y[held]).sum())
            s["loss"] -= float(np.log(np.clip(p[np.arange(len(held)), y[held]], 1e-7, 1)).sum())
            s["n"] += len(held)
    return {l2: {"accuracy": s["correct"] / s["n"], "loss": s["loss"] / s["n"]} for l2, s in sorted(scores.items())}


def best_l2(cv: dict) -> float:
    """The strength with the lowest held-out cross-entropy (the smoother criterion on small folds)."""
    return min(cv, key=lambda l2: cv[l2]["loss"])


def choose_and_fit(x, y, classes: int, folds: list[np.ndarray], grid=L2_GRID, balanced: bool = True,
                   label_smoothing: float = 0.0) -> LinearProbe:
    """Choose the strength by cross-validation over ``folds`` of ``(x, y)``, then fit on all of ``(x, y)``.

    Example:
        >>> probe = choose_and_fit(x, y, 5, stratified_folds(y, 5, seed=0))
    """
    cv = cross_validate_l2(x, y, classes, folds, grid, balanced, label_smoothing)
    l2 = best_l2(cv)
    weight = class_balanced_weights(y, classes) if balanced else None
    probe = fit_softmax_regression(x, y, classes, l2, weight, label_smoothing)
    probe.cv = cv
    return probe
