"""Input shapes for onnx2tf: dynamic dims stay dynamic; sizes only where a graph needs them.

onnx2tf converts most graphs with a dynamic batch, height and width (the passes fix
the Reshape targets it mis-reads). Where it cannot (a ``ConvTranspose``, or any
failure of a dynamic conversion), every dynamic dim is sized, in this order: from
``--input-shape``, the ``--sample`` file, the model's own ``metadata_props``
(``imgsz``, ``img_size``, ``image_size``, ``input_size``); otherwise the conversion
is refused with a message naming the dims. Never a silent default size.

Example:
    >>> model = set_input_shapes(read_onnx("ocr.onnx"), {"image": [-1, 3, 48, 320]}, batch="auto")
    >>> dynamic_dims(model)
    {'image': {0: 'batch'}}
"""

from __future__ import annotations

import json

from converter.errors import ConversionError, InputError
from converter.logs import log

# ONNX element types -> numpy dtype names.
_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}

# metadata_props keys exporters write an image size under (Ultralytics: imgsz "[320, 320]").
SIZE_METADATA_KEYS = ("imgsz", "img_size", "image_size", "input_size")

# Ops onnx2tf converts only with static shapes (conv2d_transpose gets a static output size).
STATIC_SHAPE_OPS = ("ConvTranspose",)


def _real_inputs(model):
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def set_input_shapes(model, shapes: dict[str, list[int]] | None, batch: str):
    """Fix input dims from ``shapes`` (``--input-shape``); make dim 0 dynamic (``batch="dynamic"``).

    Other dynamic dims stay dynamic (see ``fix_dynamic_dims`` for when they get a size).

    Raises:
        InputError: a shape names an unknown input or has the wrong rank.
    """
    shapes = dict(shapes or {})
    real_inputs = _real_inputs(model)
    unknown = sorted(set(shapes) - {i.name for i in real_inputs})
    if unknown:
        raise InputError(f"--input-shape names unknown input(s) {unknown}; the model's inputs are {[i.name for i in real_inputs]}")
    problems = []
    for inp in real_inputs:
        dims = inp.type.tensor_type.shape.dim
        if inp.name in shapes:
            new = shapes[inp.name]
            if len(new) != len(dims):
                problems.append(f"{inp.name}: --input-shape has rank {len(new)}, the model's input has rank {len(dims)}")
                continue
            for d, v in zip(dims, new):
                if v is None or v < 0:
                    d.dim_param = d.dim_param or "batch"
                else:
                    d.dim_value = int(v)
        if batch == "dynamic" and len(dims):
            dims[0].dim_param = "batch"
        if batch == "static" and len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    if problems:
        raise InputError("--input-shape does not fit the model:\n  " + "\n  ".join(problems))
    if batch in ("dynamic", "static"):
        for out in model.graph.output:
            dims = out.type.tensor_type.shape.dim
            if len(dims) and batch == "dynamic":
                dims[0].dim_param = "batch"
            elif len(dims) and not dims[0].HasField("dim_value"):
                dims[0].dim_value = 1
    return model


def dynamic_dims(model, skip_batch: bool = False) -> dict[str, dict[int, str]]:
    """``{input: {dim index: dim name}}`` of the inputs' dynamic dims (dim 0 too unless ``skip_batch``)."""
    found = {}
    for inp in _real_inputs(model):
        dims = inp.type.tensor_type.shape.dim
        dyn = {k: d.dim_param or "?" for k, d in enumerate(dims) if not d.HasField("dim_value") and (k or not skip_batch)}
        if dyn:
            found[inp.name] = dyn
    return found


def static_shape_nodes(model) -> list[str]:
    """The nodes (``op 'name'``) onnx2tf converts only with static input shapes."""
    return [f"{n.op_type} '{n.name or n.output[0]}'" for n in model.graph.node if n.op_type in STATIC_SHAPE_OPS]


def metadata_image_size(model) -> tuple[tuple[int, int], str] | None:
    """``((height, width), key)`` from an image size the exporter wrote into ``metadata_props``."""
    for prop in model.metadata_props:
        if prop.key not in SIZE_METADATA_KEYS:
            continue
        try:
            value = json.loads(prop.value)
        except ValueError:
            continue
        value = [value, value] if isinstance(value, int) else value
        if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
            return (value[0], value[1]), prop.key
    return None


def fix_dynamic_dims(model, sample_shapes: dict | None, reason: str, keep_batch: bool = False) -> dict:
    """Size every dynamic input dim in place (the ``--sample`` file, else metadata); return what was chosen.

    The batch becomes the sample's, else 1 (``keep_batch`` leaves it dynamic).

    Raises:
        ConversionError: a dynamic dim has no size from any source; names the dims and
            the options that give one.
    """
    meta = metadata_image_size(model)
    fixed, problems = {}, []
    for inp in _real_inputs(model):
        dims = inp.type.tensor_type.shape.dim
        dyn = {k: d.dim_param or "?" for k, d in enumerate(dims) if not d.HasField("dim_value") and (k or not keep_batch)}
        if not dyn:
            continue
        sample = (sample_shapes or {}).get(inp.name)
        if sample is not None and len(sample) == len(dims):
            sizes, origin = {k: int(sample[k]) for k in dyn}, "the --sample file"
        elif meta and len(dims) == 4 and set(dyn) <= {0, 2, 3}:
            sizes, origin = {k: (1 if k == 0 else meta[0][k - 2]) for k in dyn}, f"the model's metadata_props '{meta[1]}'"
        elif set(dyn) == {0}:
            sizes, origin = {0: 1}, "a batch of 1"
        else:
            problems.append(f"{inp.name}: dims " + ", ".join(f"{k} ('{n}')" for k, n in dyn.items() if k))
            continue
        for k, v in sizes.items():
            dims[k].dim_value = v
        shape = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
        fixed[inp.name] = {"shape": shape, "dynamic_dims": {str(k): n for k, n in dyn.items()}, "from": origin, "why": reason}
        log.warning("Input '%s': converting with the static shape %s (from %s) because %s", inp.name, shape, origin, reason)
    if problems:
        hints = " ".join(f"--input-shape {inp}:D0,D1,…" for inp in dynamic_dims(model))
        raise ConversionError(
            f"This model needs static input sizes because {reason}.\nNo size is known for:\n  " + "\n  ".join(problems)
            + f"\nGive them with {hints} (-1 keeps the batch dynamic) or --sample FILE.npz (an input of the size you will use)."
        )
    if not keep_batch:
        for out in model.graph.output:
            dims = out.type.tensor_type.shape.dim
            if len(dims) and not dims[0].HasField("dim_value"):
                dims[0].ClearField("dim_param")
    if fixed:
        model.metadata_props.add(key="transferjs.fixed_input_shapes", value=json.dumps(fixed))
    return fixed


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


def npz_scalars(sample_file) -> dict:
    """``{name: value}`` of the 0-d (or one-element) arrays of a ``--sample`` file: the values of scalar inputs."""
    import numpy as np

    try:
        with np.load(sample_file, allow_pickle=False) as f:
            return {k: f[k].ravel()[0].item() for k in f.files if f[k].size == 1}
    except Exception as e:
        raise InputError(f"Expected a .npz file of input arrays. Received: '{sample_file}' ({e})") from None
