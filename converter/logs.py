"""Quiet the frameworks' start-up noise unless the user asks for it.

TensorFlow, absl and XLA print CUDA probing, oneDNN notices and plugin
registration errors on every start, even on a CPU-only machine. None of it is
about the user's model. Real problems still reach the user: they surface as
Python exceptions, and warnings raised by our own code are never filtered.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

log = logging.getLogger("transferjs")

# Environment for TensorFlow processes (this one, and onnx2tf's subprocess).
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # C++ INFO/WARNING/ERROR start-up lines (cuInit, cuDNN factory)
    "CUDA_VISIBLE_DEVICES": "-1",  # skip GPU probing; transferjs runs on the CPU
}

# oneDNN's graph rewrites run inside the TF.js export's grappler pass and emit ops
# no TF.js backend has (_FusedHardSwish, GeluExact fused into MatMul, _MklLayerNorm).
# The flag is read once, when TensorFlow loads: set it before that.
NO_ONEDNN = {"TF_ENABLE_ONEDNN_OPTS": "0"}

# Python warnings from dependencies that say nothing about the user's model.
_NOISE = (
    r"pkg_resources is deprecated",
    r".*legacy TorchScript-based ONNX export",
    r"Constant folding - Only steps=1",
    r"The feature will be removed",
    r".*isinstance\(treespec, LeafSpec\)",
    r"You are saving your model as an HDF5 file",
    r".*np\.object.*",
)


def configure(verbose: bool = False) -> None:
    """Set up logging for a CLI run. Call before TensorFlow is imported.

    Args:
        verbose: show everything the frameworks print, and our debug lines.

    Example:
        >>> configure(verbose=False)
    """
    for key, value in NO_ONEDNN.items():
        os.environ.setdefault(key, value)
    logging.basicConfig(format="%(message)s", level=logging.WARNING)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    if verbose:
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for pattern in _NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("absl", "tensorflow", "h5py", "jax", "onnx2tf", "torch.onnx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    divert_native_stderr()


NATIVE_LOG = Path(tempfile.gettempdir()) / f"transferjs-native-{os.getuid()}.log"


def divert_native_stderr(path: Path = NATIVE_LOG) -> None:
    """Send what C++ libraries write to file descriptor 2 into ``path``.

    XLA and TensorFlow's C++ code log CUDA probing and plugin registration
    straight to fd 2, before and despite ``TF_CPP_MIN_LOG_LEVEL``. Python's own
    ``sys.stderr`` (our messages, warnings, tracebacks) keeps the real terminal.
    """
    if getattr(divert_native_stderr, "done", False):
        return
    sys.stderr.flush()
    terminal = os.dup(2)
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.stderr = io.TextIOWrapper(os.fdopen(terminal, "wb", buffering=0), write_through=True, errors="backslashreplace")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setStream(sys.stderr)
    divert_native_stderr.done = True


def subprocess_env(verbose: bool = False) -> dict:
    """The environment for a framework subprocess (quiet unless ``verbose``)."""
    env = dict(os.environ)
    if not verbose:
        env.update(QUIET_ENV)
        env["PYTHONWARNINGS"] = "ignore"
    return env
