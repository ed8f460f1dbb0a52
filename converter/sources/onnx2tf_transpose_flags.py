"""onnx2tf's per-tensor "was it transposed?" flag, judged on shapes alone in layout-free graphs.

After each op onnx2tf records ``before_op_output_shape_trans`` for its outputs: True when
it thinks the TensorFlow tensor is in channels-last order, so that the next op's axes
(Reduce*, Concat, Squeeze, Gather, Transpose…) are moved. It compares the ONNX and
TensorFlow shapes, and then guesses "transposed" whenever the dims after the first are
all equal (``[3, 2, 2]``), since the shapes cannot tell there. In a layout-free graph
(``converter.sources.onnx_layout``: inputs kept as they are, nothing ever transposed)
that guess is always wrong: ``ReduceSum(Abs(x [3, 2, 2]), axes=[1])`` summed axis 2
(the 28 expanded ReduceL1/L2/LogSumExp/SumSquare node tests). ``install`` wraps
onnx2tf's decorator so that, while ``layout_free(True)`` is in force, the flag is the
shape comparison alone.

Example:
    >>> install()            # before onnx2tf imports its ops
    >>> with layout_free(True):
    ...     onnx2tf.convert(...)
"""

from __future__ import annotations

import contextlib
import functools

_STATE = {"layout_free": False}


def _known(shape) -> list | None:
    """Names and sizes < 1 (an empty dim reads as unknown to onnx2tf) become None."""
    return None if shape is None else [None if isinstance(s, str) or (s is not None and s < 1) else s for s in shape]


def _onnx_shape(variable, batch_size) -> list | None:
    """The ONNX output shape as onnx2tf normalizes it (``batch_size`` overrides dim 0)."""
    shape = _known(variable.shape)
    if shape and shape.count(None) != len(shape) and batch_size is not None:
        shape[0] = batch_size
    return shape


def _mark_by_shapes(kwargs: dict) -> None:
    """Set each output's flag to "its TensorFlow shape differs from the ONNX one".

    Both sides are normalized alike: onnx2tf compared ``[2, None, 4]`` (an ONNX
    ``[2, 0, 4]``) with TensorFlow's ``[2, 0, 4]`` and so flagged every empty tensor.
    """
    node, layers, batch_size = kwargs.get("graph_node"), kwargs.get("tf_layers_dict"), kwargs.get("batch_size")
    for output in node.outputs:
        tf_shape = layers[output.name]["tf_node"].shape
        tf_dims = None if getattr(tf_shape, "rank", 0) is None else _known(list(tf_shape))  # a TensorShape or a tuple
        layers[output.name]["before_op_output_shape_trans"] = _onnx_shape(output, batch_size) != tf_dims


def _judging(original):
    """onnx2tf's ``inverted_operation_enable_disable`` decorator, made to follow ``_STATE``."""

    def decorator(func):
        judged = original(func)

        @functools.wraps(func)
        def call(*args, **kwargs):
            if not _STATE["layout_free"]:
                return judged(*args, **kwargs)
            result = func(*args, **kwargs)
            _mark_by_shapes(kwargs)
            return result

        return call

    return decorator


def install() -> None:
    """Wrap onnx2tf's flag decorator; a no-op when done already.

    onnx2tf imports each op's module when it first meets the op and decorates it then,
    so this must run before the first conversion in the process.

    Example:
        >>> install()
    """
    from onnx2tf.utils import common_functions

    if getattr(common_functions, "_judged_by_transferjs", False):
        return
    common_functions.inverted_operation_enable_disable = _judging(common_functions.inverted_operation_enable_disable)
    common_functions._judged_by_transferjs = True


@contextlib.contextmanager
def layout_free(enabled: bool):
    """While in force, installed ops flag their outputs by shapes alone (``enabled``) or as onnx2tf does.

    Example:
        >>> with layout_free(True):
        ...     pass
    """
    previous, _STATE["layout_free"] = _STATE["layout_free"], bool(enabled)
    try:
        yield
    finally:
        _STATE["layout_free"] = previous
