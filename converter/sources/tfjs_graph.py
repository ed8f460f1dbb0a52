"""A TF.js graph model's topology and weights as a TensorFlow GraphDef, and its inputs and outputs.

``modelTopology`` of a graph model is a GraphDef in protobuf JSON whose weight ``Const`` nodes
lost their values to the shards; the values go back in, fused ops are split
(``tfjs_fused_ops``), and every op is checked against TensorFlow's registry before anything
is built, all unknown ops listed with their nodes.

Example:
    >>> graph = tfjs_graph_def(read_tfjs_files("model.json"))
    >>> graph.inputs[0].name, graph.outputs
    ('input', ['Identity:0'])
"""

from __future__ import annotations

from dataclasses import dataclass, field

from converter.errors import InputError, UnsupportedOpsError
from converter.model import TensorSpec
from converter.sources.tfjs_files import TfjsFiles
from converter.sources.tfjs_fused_ops import split_fused_ops
from converter.tfjs_initializer import inline_initializer

_NOT_OUTPUTS = {"Const", "NoOp", "Placeholder", "Assert"}
# tensorflowjs lowers while loops and conds to these TF1 frame ops; TensorFlow 2 cannot freeze a
# function holding them (convert_variables_to_constants_v2: "inputs from different frames").
FRAME_OPS = {"Enter", "Exit", "Merge", "Switch", "NextIteration", "LoopCond"}


@dataclass
class TfjsGraph:
    """A graph model ready for TensorFlow.

    Args:
        graph_def: the GraphDef, weights filled in, fused ops split.
        inputs: one ``TensorSpec`` per input, named as TF.js names it.
        placeholders: ``{input name: its Placeholder node}``.
        outputs: output tensor names (``"Identity:0"``), in the order TF.js returns them.
        output_names: what TF.js calls each (signature keys, ``":0"`` dropped).
        output_shapes: ``{output name: shape}`` where the signature gives one.
        fused_split: how many fused nodes were split.
    """

    graph_def: object
    inputs: list
    placeholders: dict
    outputs: list
    output_names: list
    output_shapes: dict = field(default_factory=dict)
    fused_split: int = 0


def output_name(tensor: str) -> str:
    """The source name of an output tensor: ``"Identity:0"`` -> ``"Identity"`` (other indices kept)."""
    return tensor[:-2] if tensor.endswith(":0") else tensor


def image_layout(shape, dtype: str) -> str | None:
    if len(shape) == 4 and dtype.startswith("float") and shape[-1] in (1, 3, 4):
        return "NHWC"
    return None


def _dims(shape_json: dict | None) -> list | None:
    if shape_json is None or shape_json.get("unknownRank"):
        return None
    return [None if int(d.get("size", -1)) < 0 else int(d["size"]) for d in shape_json.get("dim", [])]


def _dtype(name: str) -> str:
    import tensorflow as tf

    return tf.dtypes.as_dtype(getattr(tf.dtypes, name.replace("DT_", "").lower(), tf.float32)).name


def _signature(data: dict) -> dict:
    return data.get("signature") or (data.get("userDefinedMetadata") or {}).get("signature") or {}


def _io(files: TfjsFiles, data: dict, graph_def) -> tuple[list, dict, list, list, dict]:
    """Inputs, their Placeholder nodes, output tensors, their source names and shapes.

    Names are what TF.js calls them: the signature block's keys (``":0"`` dropped), else the
    Placeholders and the nodes nothing consumes.
    """
    sig = _signature(data)
    nodes = {n.name: n for n in graph_def.node}
    if sig.get("inputs"):
        inputs = [(output_name(key), spec.get("name", key).split(":")[0], _dims(spec.get("tensorShape")),
                   _dtype(spec.get("dtype", "DT_FLOAT"))) for key, spec in sig["inputs"].items()]
    else:
        inputs = [(n.name, n.name, _dims(_shape_attr(n)), _dtype(_enum_name(n.attr["dtype"].type)))
                  for n in graph_def.node if n.op == "Placeholder"]
    missing = [node for _, node, _, _ in inputs if node not in nodes]
    if missing:
        raise InputError(f"'{files.path}': the signature names input(s) {', '.join(missing)}, which the modelTopology lacks")
    specs = [TensorSpec(name, shape or [], dtype, image_layout(shape or [], dtype)) for name, _, shape, dtype in inputs]
    placeholders = {name: node for name, node, _, _ in inputs}
    if sig.get("outputs"):
        tensors = [spec.get("name", key) for key, spec in sig["outputs"].items()]
        names = [output_name(key) for key in sig["outputs"]]
        shapes = {output_name(key): _dims(spec.get("tensorShape")) for key, spec in sig["outputs"].items()}
    else:
        consumed = {i.split(":")[0].lstrip("^") for n in graph_def.node for i in n.input}
        tensors = [f"{n.name}:0" for n in graph_def.node if n.name not in consumed and n.op not in _NOT_OUTPUTS]
        names, shapes = [output_name(t) for t in tensors], {}
    missing = [t for t in tensors if t.split(":")[0] not in nodes]
    if missing or not tensors:
        raise InputError(f"'{files.path}': output(s) {', '.join(missing) or '(none found)'} are not nodes of the modelTopology")
    return specs, placeholders, tensors, names, shapes


def _shape_attr(node) -> dict | None:
    from google.protobuf import json_format

    return json_format.MessageToDict(node.attr["shape"].shape) if "shape" in node.attr else None


def _enum_name(value: int) -> str:
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(value)


def _has_value(tensor) -> bool:
    return any(f.name not in ("dtype", "tensor_shape", "version_number") for f, _ in tensor.ListFields())


def _fill_weights(files: TfjsFiles, graph_def) -> None:
    """Put each manifest weight into its Const node; a weight without a node, or a node without one, is an error."""
    import tensorflow as tf

    consts = {n.name: n for n in graph_def.node if n.op == "Const"}
    for f in graph_def.library.function:
        consts.update({n.name: n for n in f.node_def if n.op == "Const"})
    unmatched = [name for name in files.weights if name not in consts]
    if unmatched:
        raise InputError(f"'{files.path}': the weightsManifest does not match the modelTopology: weight(s) "
                         f"{', '.join(unmatched[:5])}{' …' if len(unmatched) > 5 else ''} have no Const node")
    for name, value in files.weights.items():
        node = consts[name]
        declared = _dims(_shape_dict(node))
        if declared is not None and (len(declared) != value.ndim or any(d not in (None, s) for d, s in zip(declared, value.shape))):
            raise InputError(f"'{files.path}': weight '{name}' has shape {list(value.shape)} in the weightsManifest; "
                             f"its Const node in the modelTopology has {declared}")
        dtype = tf.dtypes.as_dtype(node.attr["dtype"].type) if node.attr["dtype"].type else None  # else the manifest's
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
    empty = [n for n, node in consts.items() if n not in files.weights and not _has_value(node.attr["value"].tensor)]
    if empty:
        raise InputError(f"'{files.path}': Const node(s) {', '.join(empty[:5])} have no value and no weight in the weightsManifest")


def _shape_dict(node) -> dict | None:
    from google.protobuf import json_format

    if "value" not in node.attr or not node.attr["value"].tensor.HasField("tensor_shape"):
        return None
    return json_format.MessageToDict(node.attr["value"].tensor.tensor_shape) or {"dim": []}


def check_ops(files: TfjsFiles, graph_def) -> None:
    """Every op must be a TensorFlow op (or a function of the graph's library); all unknown ones listed."""
    from tensorflow.python.framework import op_def_registry

    functions = {f.signature.name for f in graph_def.library.function}
    unknown: dict[str, list[str]] = {}
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    for n in nodes:
        if n.op not in functions and op_def_registry.get(n.op) is None:
            unknown.setdefault(n.op, []).append(n.name)
    if unknown:
        raise UnsupportedOpsError(f"TensorFlow (ops in '{files.path}')", unknown)
    frames = {}
    for n in graph_def.node:
        if n.op in FRAME_OPS:
            frames.setdefault(n.op, []).append(n.name)
    if frames:
        raise UnsupportedOpsError(f"transferjs' TF.js graph import (TF1 control flow in '{files.path}'; loops and conds are not supported yet)", frames)


def _parse_topology(files: TfjsFiles, data: dict):
    from google.protobuf import json_format
    from tensorflow.core.framework import graph_pb2

    try:
        return json_format.ParseDict(data["modelTopology"], graph_pb2.GraphDef(), ignore_unknown_fields=True)
    except json_format.ParseError as e:
        raise InputError(f"'{files.path}': modelTopology is not a TensorFlow GraphDef ({str(e)[:300]})") from None


def _check_builds(files: TfjsFiles, graph_def) -> None:
    import tensorflow as tf

    try:
        with tf.Graph().as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
    except (ValueError, TypeError, tf.errors.InvalidArgumentError) as e:
        raise InputError(f"'{files.path}': TensorFlow cannot build the graph: {str(e).splitlines()[0][:400]}") from None


def tfjs_graph_def(files: TfjsFiles) -> TfjsGraph:
    """The graph model in ``files`` as a checked TensorFlow GraphDef with its IO.

    Raises:
        InputError: topology unreadable, weights not matching it, a graph TensorFlow cannot build.
        UnsupportedOpsError: ops TensorFlow does not have (exit code 2), all listed with their nodes.
    """
    data = inline_initializer(files.json)  # weights computed at load (per-channel uint8) become graph nodes
    graph_def = _parse_topology(files, data)
    for n in graph_def.node:
        n.device = ""
    _fill_weights(files, graph_def)
    split = split_fused_ops(graph_def)
    check_ops(files, graph_def)
    _check_builds(files, graph_def)
    return TfjsGraph(graph_def, *_io(files, data, graph_def), split)
