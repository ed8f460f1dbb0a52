"""Give a SavedModel's serving signature the names the user knows.

onnx2tf's fast save path (``output_signaturedefs``: tf_keras ExportArchive, about
3x faster than its default) names outputs ``output_0, output_1, …``. This pass
re-exports the graph with the source's input and output names; the weights stay
the constants onnx2tf captured.

Example:
    >>> rename_signature("w/onnx2tf", "out/saved_model", {"output_0": "logits"})
"""

from __future__ import annotations

from pathlib import Path

SIGNATURE = "serving_default"


def rename_signature(src, dst, output_names: dict[str, str], signature: str = SIGNATURE, constants: dict | None = None,
                     drop=()) -> Path:
    """Save ``src``'s signature into ``dst`` with outputs renamed by ``output_names``.

    Before::  serving_default(image) -> {output_0, output_1}
    After::   serving_default(image) -> {logits, embedding}

    Inputs keep their keys. Keys missing from ``output_names`` keep theirs.

    Args:
        src: the SavedModel folder to read.
        dst: the SavedModel folder to write.
        output_names: ``{signature key in src: output name in dst}``.
        signature: the signature to rename.
        constants: ``{output name: array}`` returned as they are beside the graph's
            outputs (graph outputs the ONNX folding made constant: ``Shape`` of a static input).
        drop: signature keys of ``src`` left out of ``dst`` (placeholder outputs).
    """
    import tensorflow as tf

    loaded = tf.saved_model.load(str(src))
    fn = loaded.signatures[signature]
    specs = fn.structured_input_signature[1]
    keys = list(specs)
    input_signature = [tf.TensorSpec(specs[k].shape, specs[k].dtype, name=k) for k in keys]
    fixed = dict(constants or {})

    class Renamed(tf.Module):
        def __init__(self):
            super().__init__()
            self.graph = loaded

        @tf.function(input_signature=input_signature)
        def serve(self, *args):
            outs = fn(**dict(zip(keys, args)))
            renamed = {output_names.get(k, k): v for k, v in outs.items() if k not in drop}
            return {**renamed, **{name: tf.constant(value) for name, value in fixed.items()}}

    module = Renamed()
    tf.saved_model.save(module, str(dst), signatures={signature: module.serve})
    return Path(dst)
