"""Round a kernel to its 8-bit grid by what the layer computes, not weight by weight (GPTQ).

Nearest rounding makes each weight's error as small as it can be alone; the layer's
output error ``(W_q - W) X`` is what the model feels. With the inputs' second moment
``H = Xᵀ X`` (``layer_inputs``), GPTQ (Frantar et al., 2022) quantizes the input
columns of ``W`` one at a time and moves each column's rounding error onto the columns
not yet quantized, weighted by the inverse Hessian, so later columns compensate:

Before::  q = round(W / s)                       every column alone
After::   for column j (largest H_jj first):
              q_j = round(W_j);  e = (W_j - q_j) / Hinv_jj
              W_{>j} -= e · Hinv_{j, >j}           the rest absorbs the error

The grid is the one ``per_channel`` stores: each output row divided by its scale ``s``
and one affine uint8 range for the tensor, so the bundle format does not change. Then
bias correction subtracts the mean output shift ``mean(x) · (W_q - W)`` from the bias.
An identity Hessian gives nearest rounding exactly (nothing to propagate onto).

Example:
    >>> codes = gptq_codes(w_rows, hessian, grid)        # w_rows: [outputs, inputs] / s
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Damping added to H's diagonal, relative to its mean: keeps the inverse defined when sampled
# inputs leave H (nearly) singular, and pulls GPTQ towards nearest rounding where 20 photos say
# little about other images. EfficientNet-Lite0, 305 real images: 0.01 (GPTQ's value) / 0.1 / 0.3
# -> 8 / 6 / 7 top-1 flips, max Δp 0.059 / 0.042 / 0.055 (chosen on those images: one knob, 3 values).
DAMPING = 0.1


@dataclass(frozen=True)
class Grid:
    """An affine uint8 grid: ``value = low + code * step``, codes 0..255."""

    low: float
    step: float

    def codes(self, values: np.ndarray) -> np.ndarray:
        """Nearest codes of ``values`` (clipped to the grid), as float64."""
        return np.clip(np.round((values - self.low) / self.step), 0, 255)

    def values(self, codes: np.ndarray) -> np.ndarray:
        return self.low + codes * self.step


def inverse_hessian_factor(hessian: np.ndarray, damping: float | None = None) -> np.ndarray:
    """Upper Cholesky factor ``U`` of ``(H + damping · mean(diag H) · I)⁻¹ = Uᵀ U``; batched over leading axes.

    Dead inputs (``H_jj == 0``) get a unit diagonal: their weights meet no input, so any
    rounding of them is free and nothing propagates from them. One Cholesky and one
    triangular solve (TF): with ``J`` the reversal, ``J H J = M Mᵀ`` gives ``U = J M⁻¹ J``.
    """
    import tensorflow as tf

    damping = DAMPING if damping is None else damping
    h = np.array(hessian, np.float64)
    k = h.shape[-1]
    diag = np.einsum("...ii->...i", h)
    dead = diag <= 0
    diag[dead] = 1.0  # writes through the view into h
    h[..., np.arange(k), np.arange(k)] += damping * diag.mean(-1, keepdims=True)
    flipped = tf.constant(h[..., ::-1, ::-1].copy())
    m = tf.linalg.cholesky(flipped)
    eye = tf.eye(k, batch_shape=h.shape[:-2], dtype=tf.float64)
    return tf.linalg.triangular_solve(m, eye, lower=True).numpy()[..., ::-1, ::-1]


# Columns quantized between two updates of the rest (GPTQ's lazy batch): the per-column
# work touches only the block; the rest gets one matrix product per block.
BLOCK = 128


def gptq_codes(w_rows: np.ndarray, hessian: np.ndarray, grid: Grid, damping: float | None = None) -> np.ndarray:
    """uint8 codes of ``w_rows`` on ``grid`` that keep ``(W_q - W) X`` small.

    Args:
        w_rows: ``[outputs, inputs]`` weights already divided by their per-row scale.
        hessian: ``[inputs, inputs]`` (shared by every row: conv, matmul) or
            ``[outputs, inputs, inputs]`` (one per row: depthwise channels).
        grid: the tensor's affine uint8 grid.
        damping: relative diagonal damping (default ``DAMPING``).

    Returns:
        ``uint8 [outputs, inputs]`` codes.

    Example:
        >>> gptq_codes(np.eye(2), np.eye(2), Grid(-1.0, 2 / 255)).shape
        (2, 2)
    """
    w = np.array(w_rows, np.float64)
    shared = hessian.ndim == 2
    order = np.argsort(-np.diag(hessian), kind="stable") if shared else np.arange(w.shape[1])
    if shared:  # largest input energy first: its error has the most columns to land on
        w, hessian = w[:, order], hessian[np.ix_(order, order)]
    factor = inverse_hessian_factor(hessian, damping)
    codes = np.empty_like(w)
    k = w.shape[1]
    for start in range(0, k, BLOCK if shared else k):
        end = min(start + (BLOCK if shared else k), k)
        block, errors = w[:, start:end], np.empty((w.shape[0], end - start))
        for j in range(end - start):
            codes[:, start + j] = grid.codes(block[:, j])
            row = factor[..., start + j, start + j : end]  # [end - j] shared, or [outputs, end - j]
            errors[:, j] = (block[:, j] - grid.values(codes[:, start + j])) / row[..., 0]
            block[:, j:] -= errors[:, j, None] * row
        if end < k:
            w[:, end:] -= errors @ factor[start:end, end:]
    out = np.empty_like(codes)
    out[:, order] = codes
    return out.astype(np.uint8)


def bias_correction(w_rows: np.ndarray, w_quantized: np.ndarray, input_mean: np.ndarray) -> np.ndarray:
    """The per-output shift ``mean(x) · (W_q - W)`` that quantization adds; subtract it from the bias.

    Args:
        w_rows, w_quantized: ``[outputs, inputs]`` in the layer's own units (scales restored).
        input_mean: ``[inputs]`` shared, or ``[outputs, inputs]`` per row (depthwise).
    """
    delta = np.asarray(w_quantized, np.float64) - np.asarray(w_rows, np.float64)
    return (delta * input_mean).sum(-1) if np.ndim(input_mean) == 2 else delta @ input_mean


def relative_output_error(w_rows: np.ndarray, w_quantized: np.ndarray, hessian: np.ndarray) -> float:
    """``E‖(W_q - W) x‖² / E‖W x‖²`` on the calibration inputs: how much of a layer rounding changes.

    Args:
        w_rows, w_quantized: ``[outputs, inputs]``.
        hessian: ``[inputs, inputs]`` shared, or ``[outputs, inputs, inputs]`` per row.

    Example:
        >>> relative_output_error(np.ones((1, 2)), np.zeros((1, 2)), np.eye(2))
        1.0
    """
    w, d = np.asarray(w_rows, np.float64), np.asarray(w_quantized, np.float64) - np.asarray(w_rows, np.float64)
    spec = "oi,ij,oj->" if np.ndim(hessian) == 2 else "oi,oij,oj->"
    total = float(np.einsum(spec, w, hessian, w))
    return float(np.einsum(spec, d, hessian, d)) / total if total > 0 else 0.0


def affine_grid(data: np.ndarray) -> Grid:
    """tensorflowjs' per-tensor affine uint8 range of ``data``, zero exactly on the grid."""
    lo, hi = float(data.min()), float(data.max())
    if lo == hi:
        return Grid(lo, 1.0)
    step = (hi - lo) / 255
    if lo <= 0 <= hi:
        lo = -np.round(-lo / step) * step
    return Grid(float(lo), float(step))


def _as_rows(w: np.ndarray, op: str, transpose_b: bool) -> np.ndarray:
    """A kernel as ``[outputs, inputs]`` rows in im2col order (depthwise: ``[C * M, kh * kw]``)."""
    if "Depthwise" in op:
        return w.transpose(2, 3, 0, 1).reshape(w.shape[2] * w.shape[3], -1)
    if "MatMul" in op:
        return w if transpose_b else w.T
    return w.reshape(-1, w.shape[-1]).T


def _from_rows(rows: np.ndarray, shape: tuple, op: str, transpose_b: bool) -> np.ndarray:
    if "Depthwise" in op:
        return rows.reshape(shape[2], shape[3], shape[0], shape[1]).transpose(2, 3, 0, 1)
    if "MatMul" in op:
        return rows if transpose_b else rows.T
    return rows.T.reshape(shape)


def calibrated_codes(w: np.ndarray, scale: np.ndarray, op: str, transpose_b: bool, inputs,
                     float_mean: np.ndarray | None = None) -> tuple[np.ndarray, Grid, np.ndarray, float]:
    """GPTQ codes of ``w / scale`` on its affine grid, and the bias correction for the layer.

    Args:
        w: the float32 kernel (conv ``[kh, kw, Cin, Cout]``, depthwise ``[kh, kw, C, M]``, matmul).
        scale: its per-output-channel scale (``per_channel.channel_scale``).
        op, transpose_b: the node the kernel is the filter of.
        inputs: the kernel's ``layer_inputs.KernelInputs``.
        float_mean: the mean input of the float32 graph, when ``inputs`` come from the rounded
            graph before it (sequential): the shift then also removes the mean error that reaches
            the layer, ``W_q mean(x̃) - W mean(x)``; ``None``: only its own, ``(W_q - W) mean(x)``.

    Returns:
        ``(uint8 codes shaped like w, grid of w / scale, per-output shift to subtract from the bias,
        the layer's ``relative_output_error``)``.

    Example:
        >>> codes, grid, shift, error = calibrated_codes(w, channel_scale(w, "Conv2D"), "Conv2D", False, stats["W"])
    """
    grid = affine_grid(w / scale)
    rows, s = _as_rows(w.astype(np.float64), op, transpose_b), scale.reshape(-1, 1).astype(np.float64)
    hessian, mean = inputs.hessian, inputs.mean
    drift = None if float_mean is None else mean - float_mean
    if "Depthwise" in op:  # one Hessian per channel, shared by its M multipliers
        hessian, mean = np.repeat(hessian, w.shape[3], axis=0), np.repeat(mean, w.shape[3], axis=0)
        drift = None if drift is None else np.repeat(drift, w.shape[3], axis=0)
    codes = gptq_codes(rows / s, hessian, grid)
    quantized = grid.values(codes.astype(np.float64)) * s
    shift = bias_correction(rows, quantized, mean)
    if drift is not None:  # W mean(x̃) - W mean(x): the upstream error's mean, through this layer
        shift += (rows * drift).sum(-1) if drift.ndim == 2 else rows @ drift
    return _from_rows(codes, w.shape, op, transpose_b), grid, shift, relative_output_error(rows, quantized, hessian)
