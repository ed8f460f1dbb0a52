"""tensorflowjs' SavedModel -> TF.js graph model conversion, here or in a child process.

``python -m converter.export.tensorflowjs_runner REQ RES`` runs it in a child whose
TensorFlow starts with oneDNN off (see ``converter.export.tfjs._tfjs_convert``); REQ
is a JSON request, RES receives ``{"ok": bool, "error": str | None}``.

Example:
    >>> convert_saved_model({"saved_model_dir": "out/saved_model", "out_dir": "out/tfjs",
    ...                      "signature": "serving_default", "quantization_dtype_map": None,
    ...                      "shard_size": 4194304})
    {'ok': True, 'error': None}
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from converter.logs import subprocess_env


def onednn_enabled() -> bool:
    """Whether this process' TensorFlow runs with oneDNN's graph rewrites on."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # another TensorFlow build: assume the rewrites may run
        return True
    return bool(_pywrap_util_port.IsMklEnabled())


def convert_saved_model(request: dict) -> dict:
    """Convert in this process; a failure becomes the verdict's ``error``, never an exit."""
    # ydf first: tensorflow_decision_forests (imported by tensorflowjs) then prints no welcome banner.
    import ydf  # noqa: F401

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated")
        from tensorflowjs.converters import tf_saved_model_conversion_v2 as tfjs_conv
    try:
        tfjs_conv.convert_tf_saved_model(
            request["saved_model_dir"], request["out_dir"], signature_def=request["signature"],
            quantization_dtype_map=request["quantization_dtype_map"], weight_shard_size_bytes=request["shard_size"],
        )
    except ValueError as e:  # tensorflowjs reports unsupported ops and bad signatures so
        return {"ok": False, "error": str(e)}
    return {"ok": True, "error": None}


def run_in_child(request: dict) -> dict:
    """Convert in a child process with oneDNN off; its verdict, or the end of its output if it died."""
    with tempfile.TemporaryDirectory(prefix="transferjs-tfjs-") as tmp:
        req, res = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req.write_text(json.dumps(request))
        proc = subprocess.run([sys.executable, "-m", "converter.export.tensorflowjs_runner", str(req), str(res)],
                              env=subprocess_env(), capture_output=True, text=True)
        if res.exists():
            return json.loads(res.read_text())
    return {"ok": False, "error": f"the tensorflowjs process failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}"}


def main(argv: list[str]) -> int:
    req, res = argv
    verdict = convert_saved_model(json.loads(Path(req).read_text()))
    Path(res).write_text(json.dumps(verdict))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
