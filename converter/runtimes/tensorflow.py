"""Run a SavedModel's serving signature on samples (the TensorFlow side of parity).

Example:
    >>> outs = run_saved_model("out/saved_model", [{"image": x}])
    >>> outs[0]["logits"].shape
    (1, 1000)
"""

from __future__ import annotations

import re

import numpy as np

from converter.errors import ConversionError


SIGNATURE = "serving_default"


def serving_function(saved_model_dir, signature: str = SIGNATURE):
    """Load a SavedModel and return its signature function."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model_dir))
    fn = loaded.signatures[signature]
    fn._transferjs_keepalive = loaded  # the function needs its module alive
    return fn


def run_saved_model(saved_model_dir, samples: list[dict], signature: str = SIGNATURE) -> list[dict]:
    """Call the signature once per sample; return ``{output key: numpy array}`` each.

    Raises:
        ConversionError: (stage ``"run_tensorflow"``) TensorFlow refused to run the converted
            graph on a sample; see ``runtime_failure``.
    """
    import tensorflow as tf

    fn = serving_function(saved_model_dir, signature)
    wanted = fn.structured_input_signature[1]
    results = []
    for sample in samples:
        feeds = {k: tf.constant(v, dtype=wanted[k].dtype) for k, v in sample.items()}
        try:
            outputs = fn(**feeds)
        except tf.errors.OpError as e:
            raise runtime_failure(e, sample) from None
        results.append({k: v.numpy() for k, v in outputs.items()})
    return results


_DETECTED_AT = re.compile(r"Detected at node '?([^\s']+?)'? defined at")


def runtime_failure(error, sample: dict) -> ConversionError:
    """A TensorFlow run-time error of the converted graph as a ``ConversionError`` naming the op.

    The SavedModel loaded, but TensorFlow rejects it on an input the source runs on (e.g. a
    batch size or sequence length baked into a reshape): the conversion is wrong, not the input.

    Example:
        >>> str(runtime_failure(err, {"input_ids": ids}))
        "TensorFlow cannot run the converted model on input_ids [2, 7] (int64): MatMul at node …"
    """
    text = getattr(error, "message", None) or str(error)
    found = _DETECTED_AT.search(text)
    node = found.group(1) if found else getattr(getattr(error, "op", None), "name", None) or "(not named)"
    reason = next((line.strip() for line in text.splitlines() if line.strip() and not line.startswith(("Graph execution", "Detected at", "<stack", "\t", " "))), type(error).__name__)
    shapes = ", ".join(f"{k} {list(np.shape(v))} ({np.asarray(v).dtype})" for k, v in sample.items())
    return ConversionError(f"TensorFlow cannot run the converted model on {shapes}: {node.rsplit('/', 1)[-1]} at node "
                           f"'{node}' failed ({type(error).__name__}: {reason}). The source model runs on this input: the "
                           f"converted graph has a shape or layout wrong at that op", stage="run_tensorflow")


def signature_specs(saved_model_dir, signature: str = SIGNATURE) -> tuple[dict, dict]:
    """``({input key: (shape, dtype)}, {output key: (shape, dtype)})`` of a signature."""
    fn = serving_function(saved_model_dir, signature)
    ins = {k: (v.shape.as_list(), v.dtype.name) for k, v in fn.structured_input_signature[1].items()}
    outs = {k: (v.shape.as_list(), v.dtype.name) for k, v in fn.structured_outputs.items()}
    return ins, outs
