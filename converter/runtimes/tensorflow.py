"""Run a SavedModel's serving signature on samples (the TensorFlow side of parity).

Example:
    >>> outs = run_saved_model("out/saved_model", [{"image": x}])
    >>> outs[0]["logits"].shape
    (1, 1000)
"""

from __future__ import annotations


SIGNATURE = "serving_default"


def serving_function(saved_model_dir, signature: str = SIGNATURE):
    """Load a SavedModel and return its signature function."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(saved_model_dir))
    fn = loaded.signatures[signature]
    fn._transferjs_keepalive = loaded  # the function needs its module alive
    return fn


def run_saved_model(saved_model_dir, samples: list[dict], signature: str = SIGNATURE) -> list[dict]:
    """Call the signature once per sample; return ``{output key: numpy array}`` each."""
    import tensorflow as tf

    fn = serving_function(saved_model_dir, signature)
    wanted = fn.structured_input_signature[1]
    results = []
    for sample in samples:
        feeds = {k: tf.constant(v, dtype=wanted[k].dtype) for k, v in sample.items()}
        results.append({k: v.numpy() for k, v in fn(**feeds).items()})
    return results


def signature_specs(saved_model_dir, signature: str = SIGNATURE) -> tuple[dict, dict]:
    """``({input key: (shape, dtype)}, {output key: (shape, dtype)})`` of a signature."""
    fn = serving_function(saved_model_dir, signature)
    ins = {k: (v.shape.as_list(), v.dtype.name) for k, v in fn.structured_input_signature[1].items()}
    outs = {k: (v.shape.as_list(), v.dtype.name) for k, v in fn.structured_outputs.items()}
    return ins, outs
