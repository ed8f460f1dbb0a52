"""Graph outputs that folding made constant: kept out of onnx2tf, returned by the signature.

``Shape`` or ``Size`` of an input with static dims folds (onnxsim) into an
initializer that is itself a graph output. onnx2tf builds its Keras model from the
nodes and silently leaves such an output out: the SavedModel returned nothing for
the ONNX node tests ``test_shape*`` and ``test_size*``. These outputs are split off
before onnx2tf and added back, as constants, by ``rename_signature(constants=)``.

Example:
    >>> model, constants = split_constant_outputs(model)   # y = Shape(x [3, 4, 5])
    >>> constants
    {'y': array([3, 4, 5])}
    >>> constant_signature(raw, workdir / "renamed", model, constants)
"""

from __future__ import annotations

from pathlib import Path

from converter.graph.signature import rename_signature

# An output onnx2tf can build when every real output is a constant: one Identity per
# input keeps the inputs in the signature; ``constant_signature`` drops them again.
PLACEHOLDER_SUFFIX = "__transferjs_placeholder"


def constant_output_values(model) -> dict:
    """``{output name: numpy array}`` of the graph outputs held by an initializer or a ``Constant`` node.

    Example:
        >>> constant_output_values(folded_shape_model)
        {'y': array([3, 4, 5])}
    """
    from onnx import numpy_helper

    values = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and (node.domain or "") in ("", "ai.onnx"):
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                values[node.output[0]] = value
    return {o.name: numpy_helper.to_array(values[o.name]) for o in model.graph.output if o.name in values}


def split_constant_outputs(model):
    """Remove the constant graph outputs; add placeholder outputs when none is left.

    Before::  outputs: y = Shape(x) (folded: initializer [3, 4, 5]), z = Relu(x)
    After::   outputs: z;  constants {'y': [3, 4, 5]}

    Args:
        model: the folded ``onnx.ModelProto`` (left as it is).

    Returns:
        ``(model, {output name: array})``: a changed copy, or ``model`` itself and an
        empty dict when no output is constant.

    Example:
        >>> model, constants = split_constant_outputs(model)
    """
    import onnx

    constants = constant_output_values(model)
    if not constants:
        return model, {}
    model = onnx.ModelProto.FromString(model.SerializeToString())
    keep = [o for o in model.graph.output if o.name not in constants]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    if not keep:
        inits = {i.name for i in model.graph.initializer}
        for inp in (i for i in model.graph.input if i.name not in inits):
            name = inp.name + PLACEHOLDER_SUFFIX
            model.graph.node.append(onnx.helper.make_node("Identity", [inp.name], [name], name=name))
            placeholder = model.graph.output.add()
            placeholder.CopyFrom(inp)
            placeholder.name = name
    return model, constants


def constant_signature(raw, dst, model, constants: dict) -> Path:
    """Rename onnx2tf's ``output_<i>`` keys to ``model``'s output names and add ``constants``.

    Args:
        raw: the SavedModel onnx2tf wrote for ``model``.
        dst: the SavedModel folder to write.
        model: the ``onnx.ModelProto`` onnx2tf got (after ``split_constant_outputs``).
        constants: ``{output name: array}`` from ``split_constant_outputs``.

    Returns:
        ``dst``.

    Example:
        >>> constant_signature("w/onnx2tf", "w/renamed", model, {"y": np.array([3, 4, 5])})
    """
    names = [o.name for o in model.graph.output]
    outputs = {f"output_{i}": name for i, name in enumerate(names)}
    drop = {key for key, name in outputs.items() if name.endswith(PLACEHOLDER_SUFFIX)}
    return rename_signature(raw, dst, outputs, constants=constants, drop=drop)
