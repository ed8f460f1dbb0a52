"""ONNX backend node tests that convert correctly today must keep doing so.

The full run (every node test, a table per op) is ``bench/onnx_conformance.py``;
here a fixed list of cases covering common CNN and transformer ops goes through
the same per-case function, in one worker process, and each must match the
expected outputs of the ONNX test data.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

# One or two cases per op; all passed on onnx2tf 1.28.8 / TF 2.19 (see docs/onnx-conformance.md).
# The one-node LayerNormalization, RMSNormalization and Attention cases go through the
# expand_functions pass (their ONNX function bodies); ArgMax/ArgMin select_last_index through
# reversing_slice_to_gather; ConvTranspose without kernel_shape through explicit_kernel_shape.
PASSING_CASES = [
    "test_conv_with_strides_padding",  # Conv
    "test_basic_conv_without_padding",  # Conv
    "test_relu",  # Relu
    "test_add_bcast",  # Add
    "test_mul_bcast",  # Mul
    "test_matmul_2d",  # MatMul
    "test_matmul_4d",  # MatMul, attention-shaped
    "test_gemm_all_attributes",  # Gemm
    "test_softmax_axis_1",  # Softmax
    "test_concat_3d_axis_1",  # Concat
    "test_reshape_reordered_all_dims",  # Reshape
    "test_transpose_all_permutations_2",  # Transpose
    "test_maxpool_2d_pads",  # MaxPool
    "test_averagepool_2d_strides",  # AveragePool
    "test_globalaveragepool",  # GlobalAveragePool
    "test_batchnorm_example",  # BatchNormalization
    "test_sigmoid",  # Sigmoid
    "test_tanh",  # Tanh
    "test_gather_0",  # Gather
    "test_layer_normalization_4d_axis_negative_1_expanded",  # LayerNormalization
    "test_erf",  # Erf
    "test_sqrt",  # Sqrt
    "test_div_bcast",  # Div
    "test_sub_bcast",  # Sub
    "test_reduce_mean_keepdims_random",  # ReduceMean
    "test_flatten_axis1",  # Flatten
    "test_constant_pad",  # Pad
    "test_layer_normalization_2d_axis1",  # LayerNormalization, one node with Mean and InvStdDev outputs
    "test_rms_normalization_2d_axis1",  # RMSNormalization (no onnx2tf converter)
    "test_attention_3d",  # Attention (no onnx2tf converter)
    "test_castlike_FLOAT_to_DOUBLE",  # CastLike (a context-dependent function body)
    "test_argmax_keepdims_example_select_last_index",  # ArgMax, ties go to the last index
    "test_argmin_no_keepdims_random_select_last_index",  # ArgMin
    "test_convtranspose",  # ConvTranspose without kernel_shape
    "test_convtranspose_pads",  # ConvTranspose
    # A graph without a channels-first op keeps its inputs' shapes (onnx_layout):
    "test_unsqueeze_axis_2",  # Unsqueeze of a 3-D tensor: was [3, 5, 1, 4]
    "test_squeeze",  # Squeeze
    "test_slice_default_axes",  # Slice
    # Outputs folded into constants come back from the signature (onnx_constant_outputs):
    "test_shape_start_1_end_negative_1",  # Shape
    "test_size",  # Size
    # Resize as one exact Gather/MatMul per axis (onnx_resize):
    "test_resize_downsample_scales_cubic_antialias",  # Resize, cubic with antialias
    "test_resize_upsample_scales_linear_align_corners",  # Resize, linear align_corners
    "test_resize_tf_crop_and_resize_extrapolation_value",  # Resize, crop with extrapolation
    "test_resize_downsample_sizes_nearest_not_larger",  # Resize, keep_aspect_ratio_policy and axes
    "test_resize_upsample_scales_nearest",  # Resize left to onnx2tf (integer nearest upsampling)
    # Empty Reduce* axes spelled out (explicit_reduce_axes):
    "test_reduce_sum_default_axes_keepdims_example",  # ReduceSum over every axis
    "test_reduce_sum_empty_axes_input_noop",  # ReduceSum, noop_with_empty_axes
    "test_reduce_l2_keep_dims_example",  # ReduceL2 on one axis
    # A Reduce* after an op on [3, 2, 2]: onnx2tf guessed "transposed" (onnx2tf_transpose_flags):
    "test_reduce_l1_keep_dims_example_expanded",  # ReduceSum(Abs(x)), axes=[2]
    "test_reduce_log_sum_exp_do_not_keepdims_random_expanded",  # Log(ReduceSum(Exp(x)))
    "test_reduce_sum_square_negative_axes_keepdims_example_expanded",  # ReduceSum(Mul(x, x)), axes=[-2]
    # Scalar graph inputs reshaped to rank 0 (reshape_scalar_inputs):
    "test_range_float_type_positive_delta",  # Range of three scalar inputs
    "test_hannwindow_symmetric_expanded",  # a window body: Range of a scalar size
    # Casts around ops onnx2tf refuses for their element types (onnx_dtype_rewrites):
    "test_pow_types_float32_int64",  # Pow(float, int64)
    "test_pow_types_int32_float32",  # Pow(int32, float) -> int32
    "test_reduce_max_bool_inputs",  # ReduceMax of bool, as int32
    "test_isinf_negative",  # IsInf(detect_positive=0) as Equal(x, -inf)
    "test_gelu_tanh_2_expanded",  # Sum(scalar, [3, 4, 5]) as Add (broadcasting_sum_to_adds)
    "test_mod_mixed_sign_float32",  # Mod(fmod=1) of mixed signs (truncated_fmod)
    "test_clip_default_inbounds",  # Clip without bounds (unbounded_clip_to_identity)
]


def _load_bench():
    # bench/ is a folder of scripts, not a package: load the script by path.
    spec = importlib.util.spec_from_file_location("onnx_conformance", ROOT / "bench" / "onnx_conformance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


@pytest.fixture(scope="module")
def results() -> dict[str, dict]:
    """Every case of ``PASSING_CASES`` run once, in one worker process."""
    return {r["case"]: r for r in bench.run_cases(PASSING_CASES, jobs=1)}


@pytest.mark.slow
@pytest.mark.parametrize("case", PASSING_CASES)
def test_node_case_still_passes(results, case):
    r = results[case]
    assert r["status"] == "passed", f"{case} ({r['op']}): {r['status']} at {r['stage']}: {r['message']}\n{r.get('log_tail', '')}"


def test_fixed_list_covers_the_common_ops():
    ops = {bench.case_op(bench.node_test_root() / c)[0] for c in PASSING_CASES}
    wanted = {"Conv", "Relu", "Add", "Mul", "MatMul", "Gemm", "Softmax", "Concat", "Reshape", "Transpose", "MaxPool",
              "AveragePool", "GlobalAveragePool", "BatchNormalization", "Sigmoid", "Tanh", "Gather", "LayerNormalization",
              "Erf", "Sqrt", "Div", "Sub", "ReduceMean", "Flatten", "Pad", "RMSNormalization", "Attention", "CastLike",
              "ArgMax", "ArgMin", "ConvTranspose", "Unsqueeze", "Squeeze", "Slice", "Shape", "Size", "Resize", "ReduceSum",
              "ReduceL2"}
    assert wanted <= ops, sorted(wanted - ops)


def test_compare_outputs_catches_wrong_values():
    want = np.linspace(-1, 1, 24, dtype=np.float32).reshape(1, 2, 3, 4)
    assert bench.compare_outputs({"y": want}, {"y": want + 5e-5}) == []
    assert bench.compare_outputs({"y": want}, {"y": want + 1e-2}), "an error of 1e-2 must fail"
    assert bench.compare_outputs({"y": want}, {}), "a missing output must fail"
    assert bench.compare_outputs({"y": want}, {"y": want[:, :1]}), "a wrong shape must fail"


def test_compare_outputs_moves_channels_last_back_and_is_exact_on_integers():
    want = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    assert bench.compare_outputs({"y": want}, {"y": np.moveaxis(want, 1, -1)}) == []
    ints = np.arange(2000, 2006, dtype=np.int64)
    assert bench.compare_outputs({"i": ints}, {"i": ints.astype(np.int32)}) == []
    assert bench.compare_outputs({"i": ints}, {"i": ints + 1}), "integers compare exactly"
