"""What the ``transferjs`` process shows on the terminal: our messages, not the frameworks' start-up noise.

Only the application (the CLI, the demo, benchmark scripts) calls ``configure``: it
changes process-wide state — environment variables read by TensorFlow at start-up,
logging levels, warning filters, file descriptor 2 — which the libraries never do.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

from converter.logs import NO_ONEDNN, QUIET_ENV, log

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

NATIVE_LOG = Path(tempfile.gettempdir()) / f"transferjs-native-{os.getuid()}.log"


def configure(verbose: bool = False) -> None:
    """Set up the process for a CLI run. Call before TensorFlow is imported.

    Args:
        verbose: show everything the frameworks print, and our debug lines.

    Example:
        >>> configure(verbose=False)
    """
    for key, value in NO_ONEDNN.items():
        os.environ.setdefault(key, value)
    # transferjs runs on the CPU; skipping GPU probing saves start-up time in every mode.
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
    logging.basicConfig(format="%(message)s", level=logging.WARNING)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    if verbose:
        return
    for key, value in QUIET_ENV.items():
        if key != "PYTHONWARNINGS":
            os.environ.setdefault(key, value)
    for pattern in _NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("absl", "tensorflow", "h5py", "jax", "onnx2tf", "torch.onnx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    divert_native_stderr()


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


def deterministic_ops() -> None:
    """Make TensorFlow's ops deterministic for this process: a seed then gives the same training numbers
    (threads or not), and ``retrain --resume`` continues an interrupted run exactly."""
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
