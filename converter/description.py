"""Describe a converted SavedModel: the typed, complete common representation.

Everything is decided here, from the graph and the source's own IO — never learned
later while checking parity, so ``--no-verify`` gives the same ``spec.json``:
signature keys and the source names they stand for, each tensor's layout (the
channel axis moved by the conversion, read from the two shapes) and each output's
meaning (``probabilities`` when a Softmax computes it).

Example:
    >>> model = describe(folder, source, keymap, preprocessing=None, labels=None)
    >>> model.outputs[0].meaning
    'logits'
"""

from __future__ import annotations

from pathlib import Path

from converter.graph.frozen import output_meanings
from converter.layout import converted_layout
from converter.model import ConvertedModel, Preprocessing, TensorSpec
from converter.runtimes.tensorflow import signature_specs


def _output_spec(key: str, shape: list, dtype: str, source_name: str, source_shape, meaning: str) -> TensorSpec:
    src_layout, layout = converted_layout(source_shape, shape) if source_shape is not None and len(source_shape) == len(shape) else (None, None)
    return TensorSpec(key, shape, dtype, layout, source_name, src_layout, None, meaning)


def describe(folder: Path, source, keymap: dict[str, str], preprocessing: Preprocessing | None = None,
             labels=None, keras_model: str | None = None) -> ConvertedModel:
    """Build the ``ConvertedModel`` of ``folder/saved_model`` converted from ``source``.

    Args:
        folder: the model folder (``saved_model/`` inside).
        source: the ``SourceModel`` it came from (its inputs, output names and shapes).
        keymap: signature key -> the source name it stands for (keys missing: the same name).
        preprocessing, labels: what the user said about the image input and the first output.
        keras_model: the Keras file written beside the SavedModel, if any (relative to ``folder``).
    """
    tf_ins, tf_outs = signature_specs(Path(folder) / "saved_model")
    by_name = {s.name: s for s in source.inputs}
    order = [s.name for s in source.inputs]
    inputs = []
    for key, (shape, dtype) in tf_ins.items():
        src = by_name[keymap.get(key, key)]
        src_layout, layout = converted_layout(src.shape, shape)
        names = src.dim_names
        if names is not None and src_layout and len(names) == len(shape):  # the channel axis moved last
            names = names[:1] + names[2:] + names[1:2]
        inputs.append(TensorSpec(key, shape, dtype, layout or src.layout, src.name, src_layout or src.layout, src.value_range,
                                 dim_names=names if names is not None and len(names) == len(shape) else None))
    inputs.sort(key=lambda t: order.index(t.source_name))
    meanings = output_meanings(Path(folder) / "saved_model", tf_outs)
    outputs = [_output_spec(key, shape, dtype, keymap.get(key, key), source.output_shapes.get(keymap.get(key, key)), meanings[key])
               for key, (shape, dtype) in tf_outs.items()]
    position = {n: i for i, n in enumerate(source.output_names)}
    outputs.sort(key=lambda t: position.get(t.source_name, len(position)))
    return ConvertedModel(folder, inputs, outputs, source=source.provenance(), preprocessing=preprocessing,
                          labels=labels, keras_model=keras_model)
