"""The library's logger and the environment of the framework processes it starts.

Library code never changes process-wide state: it logs to ``log`` (the
application decides where that goes, see ``transferjs.console``) and sets
environment variables only in the child processes it starts.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("transferjs")

# TensorFlow, absl and XLA print CUDA probing and plugin registration on every start of a
# child process (onnx2tf, tensorflowjs), even on a CPU-only machine; none of it is about the model.
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "PYTHONWARNINGS": "ignore",
    # tensorflow_decision_forests (imported by tensorflowjs) prints a banner on stdout.
    "TFDF_DISABLE_WELCOME_MESSAGE": "1",
}

# oneDNN's graph rewrites run inside grappler and emit ops no TF.js backend has
# (_FusedHardSwish, GeluExact fused into MatMul, _MklLayerNorm). TensorFlow reads the
# flag once, at start-up, so it is set for the child processes that convert.
NO_ONEDNN = {"TF_ENABLE_ONEDNN_OPTS": "0"}


def subprocess_env(verbose: bool = False) -> dict:
    """The environment for a framework child process: oneDNN off; quiet unless ``verbose``.

    Example:
        >>> subprocess.run(cmd, env=subprocess_env())
    """
    # transferjs converts on the CPU: skipping GPU probing saves start-up time.
    env = {**os.environ, **NO_ONEDNN, "CUDA_VISIBLE_DEVICES": "-1"}
    if not verbose:
        env.update(QUIET_ENV)
    return env
