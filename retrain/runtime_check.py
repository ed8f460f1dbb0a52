"""Held-out accuracy measured in the runtime that ships: the exported TF.js bundle in Node.js (wasm),
beside the SavedModel it came from, on the same decoded and preprocessed images.

Example:
    >>> check = score_in_runtimes(model, Path("out/tfjs"), held_out_items, labels)
    >>> check["tfjs_accuracy"] == check["saved_model_accuracy"]
    True
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from converter.images import load_rgb, preprocess
from converter.runtimes.tensorflow import run_saved_model
from converter.runtimes.tfjs_node import run_bundle

# Images per Node.js call: one request carries them as float32 tensors (224x224x3 is 0.6 MB each).
_CHUNK = 48


def _batches(items, preprocessing, layout: str):

    for start in range(0, len(items), _CHUNK):
        chunk = items[start:start + _CHUNK]
        yield preprocess([load_rgb(p) for p, _ in chunk], preprocessing, layout)


def score_in_runtimes(model, bundle_dir: Path, items: list, backend: str = "wasm") -> dict:
    """Accuracy of ``model`` (SavedModel) and of its TF.js bundle on ``items`` = [(path, label index)].

    Returns:
        ``{"images", "saved_model_accuracy", "tfjs_accuracy", "same_predictions", "max_abs_probability_diff",
        "backend", "tfjs_probabilities"}``.

    Raises:
        NodeRuntimeError: TF.js could not run the bundle.
    """

    (inp,), (out,) = model.inputs, model.outputs
    saved, js, backend_used = [], [], backend
    for x in _batches(items, model.preprocessing, inp.layout or "NHWC"):
        saved.append(run_saved_model(model.saved_model, [{inp.name: x}])[0][out.name])
        run = run_bundle(bundle_dir, [{inp.name: x}], backend=backend)
        js.append(run.samples[0][out.name])
        backend_used = run.backend
    y = np.array([label for _, label in items])
    saved_p, js_p = np.concatenate(saved), np.concatenate(js)
    return {
        "images": len(items), "backend": backend_used,
        "saved_model_accuracy": float((saved_p.argmax(1) == y).mean()),
        "tfjs_accuracy": float((js_p.argmax(1) == y).mean()),
        "same_predictions": int((saved_p.argmax(1) == js_p.argmax(1)).sum()),
        "max_abs_probability_diff": float(np.abs(saved_p - js_p).max()),
        "tfjs_probabilities": js_p,
    }
