"""Run onnx2tf in its own process: ``python -m converter.sources.onnx2tf_runner REQ RES``.

onnx2tf calls ``sys.exit`` deep inside, sets environment variables and global
random seeds at import, and downloads a calibration file into its working
directory. A child process with a working directory we prepared contains all
of that: the parent gets a JSON verdict and the full log, and stays clean.

REQ is a JSON file of ``onnx2tf.convert`` keyword arguments (plus ``LAYOUT_FREE_KEY``,
ours: whether the graph is layout-free, see ``onnx2tf_transpose_flags``); RES receives
``{"ok": bool, "error": str | None, "node": the ONNX node onnx2tf stopped at}``.
"""

from __future__ import annotations

import json
import sys
import traceback

from converter.sources.onnx2tf_transpose_flags import install, layout_free

LAYOUT_FREE_KEY = "transferjs_layout_free"


class _SavedModelWritten(Exception):
    """Raised in place of the TFLite export that onnx2tf always runs after the SavedModel."""


def _skip_tflite(tf) -> None:
    # onnx2tf writes the SavedModel first, then converts to TFLite (float32 and
    # float16) with no option to skip it. We need only the SavedModel; stopping
    # at the TFLite converter saves several seconds per model.
    def stop(*args, **kwargs):
        raise _SavedModelWritten()

    tf.lite.TFLiteConverter.from_concrete_functions = stop


def run(kwargs: dict) -> dict:
    """Call ``onnx2tf.convert(**kwargs)``; return the verdict, never exit."""
    import tensorflow as tf

    _skip_tflite(tf)
    install()
    import onnx2tf

    kwargs = dict(kwargs)
    free = kwargs.pop(LAYOUT_FREE_KEY, False)
    try:
        with layout_free(free):
            onnx2tf.convert(**kwargs)
    except _SavedModelWritten:
        return {"ok": True, "error": None}
    except SystemExit as e:
        return {"ok": False, "error": f"onnx2tf exited with status {e.code}"}
    except Exception as e:  # any onnx2tf failure becomes a verdict for the parent
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "node": getattr(e, "onnx_op_name", None),
                "traceback": traceback.format_exc()}
    return {"ok": True, "error": None}


def main(argv: list[str]) -> int:
    req, res = argv
    with open(req) as f:
        kwargs = json.load(f)
    verdict = run(kwargs)
    with open(res, "w") as f:
        json.dump(verdict, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
