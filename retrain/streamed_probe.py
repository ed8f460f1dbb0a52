"""The linear head (``linear_probe``) fitted on a ``FeatureStore`` chunk by chunk: memory independent of N.

The same problem as ``linear_probe.fit_softmax_regression`` — weighted mean cross-entropy plus
``0.5 * l2 * |W|^2`` on standardized features, L-BFGS — but the mean, the spread, the loss and its
gradient are sums over chunks of rows read from disk, accumulated in float64. The sums are taken
over fixed blocks of the rows (``distributed.blocked_sum``): one process sums every block, several
workers each sum theirs and all-reduce; the result is bitwise the same, so every worker takes the
same L-BFGS steps and 1 or 2 workers give the same head.

Example:
    >>> data = StreamedFeatures(store, rows=np.flatnonzero(store.ok))
    >>> probe = fit_streamed(data, y, classes=5, l2=0.1)
    >>> predict_streamed(probe, store, rows).argmax(1)
    array([3, 0, ...])
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from retrain.distributed import SINGLE, Workers, blocked_sum
from retrain.feature_store import CHUNK_ROWS
from retrain.linear_probe import L2_GRID, SCALE_FLOOR, LinearProbe, best_l2, class_balanced_weights


class StreamedFeatures:
    """Store rows ``rows`` (sorted), with their mean and spread computed in two streaming passes.

    The scale floor is ``linear_probe.StandardizedFeatures``' (``SCALE_FLOOR`` times the mean spread); the
    span projection it uses below ``dim`` images is not needed for the same optimum.

    Args:
        store: a ``FeatureStore``; rows: its rows to use.
        chunk_rows: rows read at a time.
        workers: who sums which block (default: this process alone).
    """

    def __init__(self, store, rows: np.ndarray, chunk_rows: int = CHUNK_ROWS, workers: Workers = SINGLE):
        self.store, self.rows, self.chunk_rows = store, np.sort(np.asarray(rows, int)), chunk_rows
        self.workers, dim, n = workers, store.dim, len(self.rows)
        self.mean = self.sum_over_rows(lambda x: x.sum(0), dim) / n
        variance = self.sum_over_rows(lambda x: ((x - self.mean) ** 2).sum(0), dim) / n
        std = np.sqrt(variance)
        self.scale = np.maximum(std, SCALE_FLOOR * std.mean() + 1e-12)

    def sum_over_rows(self, term, size: int) -> np.ndarray:
        """``Σ term(raw float64 chunk)`` over every row (blocked: each worker its blocks)."""

        def partial(block: slice) -> np.ndarray:
            total = np.zeros(size)
            for _, x in self.store.batches(self.rows[block], self.chunk_rows):
                total += term(x.astype(np.float64))
            return total

        return blocked_sum(self.workers, len(self.rows), partial, size)

    def chunks(self, block: slice = slice(None)):
        """``(index into self.rows, standardized float64 rows)`` chunk by chunk, over ``block`` of the rows.

        The rows are computed in place in one buffer, valid until the next chunk (no allocation per chunk:
        a fresh float64 array each time left the allocator's peak growing with the number of chunks).
        """
        done, buffer = block.start or 0, np.empty((self.chunk_rows, self.store.dim))
        for picked, x in self.store.batches(self.rows[block], self.chunk_rows):
            z = buffer[: len(picked)]
            np.subtract(x, self.mean, out=z)
            np.divide(z, self.scale, out=z)
            yield slice(done, done + len(picked)), z
            done += len(picked)

    def to_raw(self, kernel: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raw = kernel / self.scale[:, None]
        return raw, bias - self.mean @ raw

    def from_raw(self, kernel: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return kernel * self.scale[:, None], bias + self.mean @ kernel


def objective_terms(data: StreamedFeatures, kernel, bias, target_of, w: np.ndarray, block: slice = slice(None)):
    """Σ over ``block`` of ``data``'s rows of ``w * cross-entropy``, and its gradient (no penalty).

    ``target_of(index)``: the (rows, classes) soft targets of those rows; ``w``: per-row weights.

    Returns:
        ``[loss, gradient w.r.t. the kernel (raveled), gradient w.r.t. the bias]`` as one float64 vector.
    """
    loss, g_kernel, g_bias = 0.0, np.zeros_like(kernel), np.zeros_like(bias)
    for index, z in data.chunks(block):
        logits = z @ kernel + bias
        logits -= logits.max(1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        target = target_of(index)
        loss -= float((w[index] * (target * log_p).sum(1)).sum())
        g = (np.exp(log_p) - target) * w[index][:, None]
        g_kernel += z.T @ g
        g_bias += g.sum(0)
    return np.concatenate([[loss], g_kernel.ravel(), g_bias])


def fit_streamed(data: StreamedFeatures, y: np.ndarray, classes: int, l2: float, sample_weight=None,
                 label_smoothing: float = 0.0, init: LinearProbe | None = None, max_iter: int = 500) -> LinearProbe:
    """Minimise weighted mean cross-entropy + ``0.5 * l2 * |W|^2`` over ``data`` (L-BFGS, chunked).

    Args:
        data: the rows, standardized (and who sums which block); y: their labels (aligned with ``data.rows``).
        sample_weight: per-row weights (default all 1), normalised to sum 1.

    Returns:
        The fitted ``LinearProbe`` on raw features.

    Example:
        >>> probe = fit_streamed(StreamedFeatures(store, rows), y, classes=3, l2=0.1)
    """
    from scipy.optimize import minimize

    dim = data.store.dim
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    w = w / w.sum()  # every worker knows every label: no reduction needed
    y = np.asarray(y, int)

    def target_of(index):
        t = np.full((len(y[index]), classes), label_smoothing / classes)
        t[np.arange(len(t)), y[index]] += 1.0 - label_smoothing
        return t

    def objective(theta):
        kernel, bias = theta[: dim * classes].reshape(dim, classes), theta[dim * classes:]
        total = blocked_sum(data.workers, len(y), lambda block: objective_terms(data, kernel, bias, target_of, w, block),
                            1 + theta.size)
        loss, grad = total[0] + 0.5 * l2 * (kernel**2).sum(), total[1:]
        grad[: dim * classes] += l2 * kernel.ravel()
        return loss, grad

    theta0 = np.zeros(dim * classes + classes)
    if init is not None:
        kernel0, bias0 = data.from_raw(init.kernel, init.bias)
        theta0[: dim * classes], theta0[dim * classes:] = kernel0.ravel(), bias0
    with threadpool_limits(limits=1, user_api="blas"):  # as linear_probe: skinny products, a loaded machine
        result = minimize(objective, theta0, jac=True, method="L-BFGS-B",
                          options={"maxiter": max_iter, "ftol": 1e-6, "gtol": 1e-4})
    kernel, bias = data.to_raw(result.x[: dim * classes].reshape(dim, classes), result.x[dim * classes:])
    return LinearProbe(kernel, bias, l2)


def predict_streamed(probe: LinearProbe, store, rows: np.ndarray) -> np.ndarray:
    """Probabilities of ``probe`` on store rows ``rows`` (sorted), chunk by chunk: (len(rows), classes)."""
    out = [probe.predict_proba(x) for _, x in store.batches(np.sort(np.asarray(rows, int)))]
    return np.concatenate(out) if out else np.zeros((0, len(probe.bias)), np.float32)


def choose_streamed(store, rows: np.ndarray, y: np.ndarray, classes: int, folds: list[np.ndarray],
                    l2: float | None = None, grid=L2_GRID, label_smoothing: float = 0.0,
                    workers: Workers = SINGLE) -> LinearProbe:
    """``linear_probe.choose_and_fit`` on store rows: the strength by CV over ``folds`` (or ``l2``), then a fit on all.

    ``folds``: index arrays into ``rows``/``y``. Class-balanced weights, as the in-memory head.
    """
    rows, y = np.asarray(rows, int), np.asarray(y, int)
    order = np.argsort(rows, kind="stable")
    rows, y = rows[order], y[order]  # the store is read in row order
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    folds = [np.sort(inverse[f]) for f in folds]
    cv = None
    if l2 is None:
        cv = _cross_validate(store, rows, y, classes, folds, grid, label_smoothing, workers)
        l2 = best_l2(cv)
    probe = fit_streamed(StreamedFeatures(store, rows, workers=workers), y, classes, l2, class_balanced_weights(y, classes),
                         label_smoothing)
    probe.cv = cv
    return probe


def _cross_validate(store, rows, y, classes: int, folds, grid, label_smoothing: float, workers: Workers) -> dict:
    scores = {}
    for held in folds:
        train = np.setdiff1d(np.arange(len(y)), held)
        data, previous = StreamedFeatures(store, rows[train], workers=workers), None
        weight = class_balanced_weights(y[train], classes)
        for l2 in sorted(grid, reverse=True):  # strong to weak: each fit warm-starts the next
            previous = fit_streamed(data, y[train], classes, l2, weight, label_smoothing, previous)
            p = predict_streamed(previous, store, rows[held])
            s = scores.setdefault(l2, {"correct": 0.0, "loss": 0.0, "n": 0})
            s["correct"] += float((p.argmax(1) == y[held]).sum())
            s["loss"] -= float(np.log(np.clip(p[np.arange(len(held)), y[held]], 1e-7, 1)).sum())
            s["n"] += len(held)
    return {l2: {"accuracy": s["correct"] / s["n"], "loss": s["loss"] / s["n"]} for l2, s in sorted(scores.items())}
