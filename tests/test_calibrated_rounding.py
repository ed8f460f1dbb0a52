"""Calibrated rounding (GPTQ) against nearest rounding, on a layer's output error; fast, numpy only."""

from __future__ import annotations

import numpy as np

from converter.export.calibrated_rounding import (Grid, affine_grid, bias_correction, calibrated_codes, gptq_codes,
                                                  inverse_hessian_factor)
from converter.export.layer_inputs import KernelInputs


def _correlated_inputs(rng, n: int = 2000, k: int = 48) -> np.ndarray:
    """Inputs whose features share a few latent factors (what a conv's channels look like)."""
    latent = rng.standard_normal((n, 4))
    return latent @ rng.standard_normal((4, k)) + 0.1 * rng.standard_normal((n, k))


def _output_error(w: np.ndarray, q: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum(((q - w) @ x.T) ** 2))


def test_gptq_beats_nearest_rounding_on_the_layer_output_for_correlated_inputs():
    rng = np.random.default_rng(0)
    x, w = _correlated_inputs(rng), rng.uniform(-1, 1, (16, 48))
    grid = affine_grid(w)
    nearest = grid.values(grid.codes(w))
    gptq = grid.values(gptq_codes(w, x.T @ x / len(x), grid).astype(np.float64))
    # Measured: GPTQ's output error is about a tenth of nearest rounding's on these inputs.
    assert _output_error(w, gptq, x) < 0.5 * _output_error(w, nearest, x)
    assert np.abs(gptq - w).max() <= 8 * grid.step  # still the kernel, not a different one


def test_an_identity_hessian_gives_nearest_rounding_exactly():
    rng = np.random.default_rng(1)
    w = rng.uniform(-1, 1, (8, 20))
    grid = affine_grid(w)
    assert np.array_equal(gptq_codes(w, np.eye(20), grid), grid.codes(w).astype(np.uint8))


def test_per_row_hessians_round_depthwise_channels_each_by_its_own_inputs():
    rng = np.random.default_rng(2)
    x = [_correlated_inputs(rng, 500, 9) for _ in range(3)]
    w = rng.uniform(-1, 1, (3, 9))
    grid = affine_grid(w)
    codes = gptq_codes(w, np.stack([xi.T @ xi for xi in x]), grid).astype(np.float64)
    for c in range(3):
        nearest = grid.values(grid.codes(w[c : c + 1]))
        assert _output_error(w[c : c + 1], grid.values(codes[c : c + 1]), x[c]) < _output_error(w[c : c + 1], nearest, x[c])


def test_the_inverse_hessian_factor_is_upper_and_inverts_the_damped_hessian():
    rng = np.random.default_rng(3)
    x = _correlated_inputs(rng, 300, 12)
    h = x.T @ x
    u = inverse_hessian_factor(h, damping=0.0)
    assert np.abs(np.tril(u, -1)).max() == 0
    np.testing.assert_allclose(u.T @ u, np.linalg.inv(h), rtol=1e-6, atol=1e-9)


def test_bias_correction_removes_the_mean_output_shift_of_a_conv_kernel():
    rng = np.random.default_rng(4)
    x = _correlated_inputs(rng, 1000, 3 * 3 * 4) + 0.5  # non-zero mean inputs, as after a Relu
    w = rng.uniform(-1, 1, (3, 3, 4, 8)) * np.array([1, 10, 0.1, 1, 1, 1, 3, 1])  # channels of different scale
    scale = np.abs(w).reshape(-1, 8).max(0)
    stats = KernelInputs(x.T @ x / len(x), x.mean(0), len(x))
    codes, grid, shift, error = calibrated_codes(w, scale, "Conv2D", False, stats)
    wq = grid.values(codes.astype(np.float64)) * scale
    rows, rows_q = w.reshape(-1, 8), wq.reshape(-1, 8)
    before = (x @ rows_q - x @ rows).mean(0)
    np.testing.assert_allclose(shift, before, rtol=1e-6, atol=1e-9)
    assert np.allclose((x @ rows_q - shift - x @ rows).mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(bias_correction(rows.T, rows_q.T, x.mean(0)), shift, rtol=1e-9)
    np.testing.assert_allclose(error, np.sum((x @ rows_q - x @ rows) ** 2) / np.sum((x @ rows) ** 2), rtol=1e-6)


def test_grid_codes_clip_to_eight_bits():
    grid = Grid(-1.0, 2 / 255)
    assert grid.codes(np.array([-5.0, 0.0, 5.0])).tolist() == [0.0, 128.0, 255.0]


def test_lazy_blocks_give_the_codes_of_one_block(monkeypatch):
    """The per-block update of the columns not yet reached is GPTQ's column-by-column update, batched."""
    import converter.export.calibrated_rounding as cr

    rng = np.random.default_rng(5)
    x, w = _correlated_inputs(rng), rng.uniform(-1, 1, (16, 48))
    grid, h = affine_grid(w), x.T @ x / len(x)
    monkeypatch.setattr(cr, "BLOCK", 48)
    whole = gptq_codes(w, h, grid)
    monkeypatch.setattr(cr, "BLOCK", 5)
    assert np.array_equal(gptq_codes(w, h, grid), whole)


def _two_matmuls():
    """model.json nodes of ``y = (x W1) W2`` and their weights (a real TF graph runs them)."""
    f = {"type": "DT_FLOAT"}
    nodes = [{"name": "x", "op": "Placeholder", "attr": {"dtype": f, "shape": {"shape": {"dim": [{"size": "-1"}, {"size": "4"}]}}}},
             {"name": "W1", "op": "Const", "attr": {"dtype": f, "value": {}}},
             {"name": "W2", "op": "Const", "attr": {"dtype": f, "value": {}}},
             {"name": "h", "op": "MatMul", "input": ["x", "W1"], "attr": {"T": f}},
             {"name": "y", "op": "MatMul", "input": ["h", "W2"], "attr": {"T": f}}]
    rng = np.random.default_rng(5)
    weights = {"W1": rng.standard_normal((4, 4)).astype(np.float32), "W2": rng.standard_normal((4, 3)).astype(np.float32)}
    return nodes, weights, {"x:0": rng.standard_normal((8, 4)).astype(np.float32) + 1.0}


def test_sequential_rounding_gives_later_kernels_the_inputs_of_the_rounded_earlier_ones():
    from converter.export.layer_inputs import sequential_kernel_inputs

    nodes, weights, feeds = _two_matmuls()
    kernels = {"W1": (nodes[3], "MatMul"), "W2": (nodes[4], "MatMul")}
    halve = lambda name, inputs, float_mean: ((inputs, float_mean), {name: weights[name] / 2})  # noqa: E731
    x, h = feeds["x:0"].astype(np.float64), feeds["x:0"].astype(np.float64) @ weights["W1"]
    one = sequential_kernel_inputs(nodes, weights, feeds, kernels, halve, groups=1)
    two = sequential_kernel_inputs(nodes, weights, feeds, kernels, halve, groups=2, float_means=True)
    np.testing.assert_allclose(one["W1"][0].mean, x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(one["W2"][0].mean, h.mean(0), rtol=1e-5)  # one group: the float graph's inputs
    np.testing.assert_allclose(two["W2"][0].mean, h.mean(0) / 2, rtol=1e-5)  # W1 already rounded (halved)
    np.testing.assert_allclose(two["W2"][0].hessian, (h / 2).T @ (h / 2) / len(h), rtol=1e-4)
    np.testing.assert_allclose(two["W2"][1], h.mean(0), rtol=1e-5)  # the float32 graph's mean alongside
    assert one["W2"][1] is None


def test_the_most_sensitive_kernels_fill_the_float16_budget_largest_error_first():
    from converter.export.per_channel import most_sensitive

    errors = {"stem": 3e-5, "big": 2.9e-5, "mid": 2e-5, "small": 1e-5}
    sizes = {"stem": 3456, "big": 75264, "mid": 9600, "small": 2000}
    assert most_sensitive(errors, sizes, 16000) == ["stem", "mid", "small"]  # "big" does not fit, later ones do
    assert most_sensitive(errors, sizes, 0) == []
