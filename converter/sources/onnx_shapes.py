"""Static input shapes for onnx2tf: ``--input-shape``, the ``--sample`` file, or an image default.

onnx2tf converts dynamic height/width wrongly without a word (a ``Resize`` scales only
one of them), so every dynamic dim after the batch gets a size, and the user is told which.

Example:
    >>> model = set_input_shapes(read_onnx("ocr.onnx"), {"image": [-1, 3, 48, 320]}, batch="auto")
"""

from __future__ import annotations

import json

from converter.errors import InputError
from converter.logs import log

# ONNX element types -> numpy dtype names.
_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}

DEFAULT_IMAGE_SIZE = 224  # height and width an image input gets when the model leaves them dynamic


def set_input_shapes(model, shapes: dict[str, list[int]] | None, batch: str, sample_shapes: dict[str, list[int]] | None = None):
    """Fix input dims from ``shapes``; make dim 0 dynamic (``batch="dynamic"``) or fixed.

    onnx2tf converts dynamic height/width wrongly without a word (a ``Resize`` scales
    only one of them), so every dynamic dim after the batch gets a size: from
    ``shapes`` (``--input-shape``), else from ``sample_shapes`` (the ``--sample``
    file), else ``DEFAULT_IMAGE_SIZE`` for the height and width of an image input
    (4-D float, 1, 3 or 4 channels). Each size chosen so is logged and recorded in
    ``model.metadata_props`` (key ``transferjs.fixed_input_shapes``); the batch stays as it was.

    Raises:
        InputError: a shape names an unknown input or has the wrong rank, or a
            non-batch dim stays dynamic with nothing to size it.
    """
    shapes = dict(shapes or {})
    sample_shapes = dict(sample_shapes or {})
    inits = {i.name for i in model.graph.initializer}
    real_inputs = [i for i in model.graph.input if i.name not in inits]
    unknown = sorted(set(shapes) - {i.name for i in real_inputs})
    if unknown:
        raise InputError(f"--input-shape names unknown input(s) {unknown}; the model's inputs are {[i.name for i in real_inputs]}")
    problems, fixed = [], {}
    for inp in real_inputs:
        dims = inp.type.tensor_type.shape.dim
        if inp.name in shapes:
            new = shapes[inp.name]
            if len(new) != len(dims):
                problems.append(f"{inp.name}: --input-shape has rank {len(new)}, the model's input has rank {len(dims)}")
                continue
            for d, v in zip(dims, new):
                if v is None or v < 0:
                    d.dim_param = "batch"
                else:
                    d.dim_value = int(v)
        if batch == "dynamic" and len(dims):
            dims[0].dim_param = "batch"
        chosen = _size_dynamic_dims(inp, sample_shapes.get(inp.name))
        if chosen:
            fixed[inp.name] = chosen
        for k, d in enumerate(dims):
            if k > 0 and not d.HasField("dim_value"):
                problems.append(f"{inp.name}: dim {k} is dynamic ('{d.dim_param or '?'}')")
    if problems:
        raise InputError(
            "Static shapes are needed for these input dims; give them with --input-shape NAME:D0,D1,… "
            "(use -1 for a dynamic batch) or a --sample file:\n  " + "\n  ".join(problems)
        )
    if fixed:
        model.metadata_props.add(key="transferjs.fixed_input_shapes", value=json.dumps(fixed))
    if batch == "dynamic":
        for out in model.graph.output:
            dims = out.type.tensor_type.shape.dim
            if len(dims):
                dims[0].dim_param = "batch"
    return model


def _size_dynamic_dims(inp, sample_shape) -> dict | None:
    """Give the dynamic non-batch dims of ``inp`` a size (sample file, else image default); say which."""
    t = inp.type.tensor_type
    dims = t.shape.dim
    dynamic = {k: d.dim_param or "?" for k, d in enumerate(dims) if k > 0 and not d.HasField("dim_value")}
    if not dynamic:
        return None
    if sample_shape is not None and len(sample_shape) == len(dims):
        sizes, origin = {k: int(sample_shape[k]) for k in dynamic}, "the --sample file"
    elif (len(dims) == 4 and _ONNX_DTYPES.get(t.elem_type, "").startswith("float") and dims[1].HasField("dim_value")
          and dims[1].dim_value in (1, 3, 4) and set(dynamic) <= {2, 3}):
        sizes, origin = {k: DEFAULT_IMAGE_SIZE for k in dynamic}, f"the default for images, {DEFAULT_IMAGE_SIZE}"
    else:
        return None
    for k, v in sizes.items():
        dims[k].dim_value = v
    shape = [-1 if not d.HasField("dim_value") else d.dim_value for d in dims]
    named = ", ".join(f"{k} ('{n}')" for k, n in dynamic.items())
    hint = ",".join(f"<{dynamic[k]}>" if k in dynamic else str(v) for k, v in enumerate(shape))
    log.warning("Input '%s': dims %s are dynamic; converting with shape %s (from %s). Choose the size with "
                "--input-shape %s:%s", inp.name, named, shape, origin, inp.name, hint)
    return {"shape": shape, "dynamic_dims": {str(k): n for k, n in dynamic.items()}, "from": origin}


def npz_shapes(sample_file, inputs: list[dict]) -> dict[str, list[int]]:
    """``{input name: shape}`` of the arrays in a ``--sample`` file (one array fits a one-input model)."""
    import numpy as np

    try:
        with np.load(sample_file, allow_pickle=False) as f:
            shapes = {k: list(f[k].shape) for k in f.files}
    except Exception as e:
        raise InputError(f"Expected a .npz file of input arrays. Received: '{sample_file}' ({e})") from None
    if len(inputs) == 1 and len(shapes) == 1:
        return {inputs[0]["name"]: next(iter(shapes.values()))}
    return shapes
