"""Quiet the frameworks' start-up noise unless the user asks for it.

TensorFlow, absl and XLA print CUDA probing, oneDNN notices and plugin
registration errors on every start, even on a CPU-only machine. None of it is
about the user's model. Real problems still reach the user: they surface as
Python exceptions, and warnings raised by our own code are never filtered.
"""

from __future__ import annotations

import logging
import os
import warnings

log = logging.getLogger("transferjs")

# Environment for TensorFlow processes (this one, and onnx2tf's subprocess).
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # C++ INFO/WARNING/ERROR start-up lines (cuInit, cuDNN factory)
    "CUDA_VISIBLE_DEVICES": "-1",  # skip GPU probing; transferjs runs on the CPU
    "TF_ENABLE_ONEDNN_OPTS": "1",
}

# Python warnings from dependencies that say nothing about the user's model.
_NOISE = (
    r"pkg_resources is deprecated",
    r".*legacy TorchScript-based ONNX export",
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
    logging.basicConfig(format="%(message)s", level=logging.WARNING)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    if verbose:
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for pattern in _NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("absl", "tensorflow", "h5py", "jax", "onnx2tf"):
        logging.getLogger(name).setLevel(logging.ERROR)


def subprocess_env(verbose: bool = False) -> dict:
    """The environment for a framework subprocess (quiet unless ``verbose``)."""
    env = dict(os.environ)
    if not verbose:
        env.update(QUIET_ENV)
        env["PYTHONWARNINGS"] = "ignore"
    return env
