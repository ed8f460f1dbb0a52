"""Passes on a TF.js graph model, so the TF.js backends can run it.

tensorflowjs' converter runs grappler, which fuses ops into forms the TF.js
kernels may lack. Each pass rewrites the parsed ``model.json`` (topology and
weight specs; the weight bytes never change); the order is ``PASSES``.

Example:
    >>> applied = apply_passes(Path("bundle/model.json"))
    >>> applied
    {'unfuse_unsupported_activations': 1}
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from converter.export.tfjs_ops import FUSED_OPS as _FUSED_OPS
from converter.passes import run_in_order
from converter.runtimes.tfjs_support import converter_ops, wasm_fusable_activations

_NON_ACTIVATIONS = {"BiasAdd", "Add", "AddV2", "FusedBatchNorm", "FusedBatchNormV3"}


def _strings(attr: dict) -> list[str]:
    return [base64.b64decode(s).decode() for s in attr.get("list", {}).get("s", [])]


def _set_strings(attr: dict, values: list[str]) -> None:
    attr.setdefault("list", {})["s"] = [base64.b64encode(v.encode()).decode() for v in values]


def unfuse_unsupported_activations(model: dict) -> int:
    """Split activations the wasm backend cannot fuse out of fused conv/matmul nodes.

    Before::  X = _FusedMatMul(a, w, b) fused_ops=[BiasAdd, Tanh]
    After::   X/pre_activation = _FusedMatMul(a, w, b) fused_ops=[BiasAdd];  X = Tanh(X/pre_activation)

    The activation node keeps the original name, so consumers need no change.
    Which activations wasm fuses, and which exist as ops on their own, is the
    runtime's answer (``tfjs_ops``). One that is neither stays fused, and the
    compatibility check (``tfjs_ops.check_runtime_support``) lists it.
    Returns the number of nodes split.
    """
    topology = model["modelTopology"]
    fusable, standalone = wasm_fusable_activations(), converter_ops()
    new_nodes, count = [], 0
    for node in topology.get("node", []):
        if node["op"] in _FUSED_OPS:
            fused = _strings(node.get("attr", {}).get("fused_ops", {}))
            acts = [f for f in fused if f not in _NON_ACTIVATIONS]
            if acts and acts[-1] not in fusable and acts[-1] in standalone:
                act = acts[-1]
                pre = dict(node, name=node["name"] + "/pre_activation", attr=dict(node["attr"]))
                pre["attr"]["fused_ops"] = {}
                _set_strings(pre["attr"]["fused_ops"], [f for f in fused if f != act])
                new_nodes.append(pre)
                new_nodes.append({"name": node["name"], "op": act, "input": [pre["name"]], "attr": {"T": {"type": "DT_FLOAT"}}})
                count += 1
                continue
        new_nodes.append(node)
    topology["node"] = new_nodes
    return count


def _is_fused_bias(node: dict, input_index: int) -> bool:
    fused = _strings(node.get("attr", {}).get("fused_ops", {}))
    return node["op"] in _FUSED_OPS and input_index == 2 and fused[:1] == ["BiasAdd"]


def flatten_fused_biases(model: dict) -> int:
    """Give fused conv/matmul nodes the rank-1 bias the wasm backend requires.

    Grappler folds a broadcast ``Add`` (e.g. a batch norm's shift, shape [1, 1, 1, C])
    into the conv as its bias; wasm refuses it ("FusedConv2D only supports rank-1
    bias but got rank 4"). The values are the same in either shape, so the weight
    is reshaped.

    Before::  bias: Const [1, 1, 1, C];  y = _FusedConv2D(x, w, bias) fused_ops=[BiasAdd]
    After::   bias: Const [C];           y = _FusedConv2D(x, w, bias) fused_ops=[BiasAdd]

    Returns the number of weights reshaped.
    """
    topology = model["modelTopology"]
    specs = {w["name"]: w for group in model["weightsManifest"] for w in group["weights"]}
    consumers: dict[str, list] = {}
    for node in topology.get("node", []):
        for i, name in enumerate(node.get("input", [])):
            consumers.setdefault(name.split(":")[0], []).append((node, i))
    count = 0
    for name, spec in specs.items():
        shape = spec["shape"]
        uses = consumers.get(name, [])
        if len(shape) < 2 or not uses or any(d != 1 for d in shape[:-1]):
            continue
        if all(_is_fused_bias(node, i) for node, i in uses):
            spec["shape"] = [shape[-1]]
            count += 1
    for node in topology.get("node", []):
        spec = specs.get(node["name"])
        if node["op"] == "Const" and spec is not None:
            tensor = node.get("attr", {}).get("value", {}).get("tensor", {})
            if "tensorShape" in tensor:
                tensor["tensorShape"] = {"dim": [{"size": str(d)} for d in spec["shape"]]}
    return count


_UNFUSED_OP = {"_FusedConv2D": "Conv2D", "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative", "_FusedMatMul": "MatMul"}
_FUSION_ATTRS = {"fused_ops", "num_args", "epsilon", "leakyrelu_alpha"}


def unfuse_computed_biases(model: dict) -> int:
    """Split fused conv/matmul nodes whose bias is computed, not a weight, into plain ops.

    An unrolled LSTM/GRU adds a state-dependent term as the "bias" of a fused
    MatMul ([batch, time, units], rank 3); the wasm kernels take only a rank-1
    bias ("_FusedMatMul only supports rank-1 bias but got rank 3").

    Before::  Y = _FusedMatMul(a, w, h) fused_ops=[BiasAdd, Sigmoid]      (h is not a weight)
    After::   Y/matmul = MatMul(a, w);  Y/bias = AddV2(Y/matmul, h);  Y = Sigmoid(Y/bias)

    The last node keeps the original name, so consumers need no change.
    Returns the number of nodes split.
    """
    topology = model["modelTopology"]
    weights = {w["name"] for group in model["weightsManifest"] for w in group["weights"]}
    new_nodes, count = [], 0
    for node in topology.get("node", []):
        inputs = node.get("input", [])
        fused = _strings(node.get("attr", {}).get("fused_ops", {}))
        if node["op"] not in _UNFUSED_OP or fused[:1] != ["BiasAdd"] or len(inputs) < 3 or inputs[2].split(":")[0] in weights:
            new_nodes.append(node)
            continue
        name, attr = node["name"], node.get("attr", {})
        plain = {"name": f"{name}/{_UNFUSED_OP[node['op']].lower()}", "op": _UNFUSED_OP[node["op"]], "input": inputs[:2],
                 "attr": {k: v for k, v in attr.items() if k not in _FUSION_ATTRS}}
        biased = {"name": name, "op": "AddV2", "input": [plain["name"], inputs[2]], "attr": {"T": attr.get("T", {"type": "DT_FLOAT"})}}
        new_nodes += [plain, biased]
        if len(fused) > 1:
            act = {"name": name, "op": fused[1], "input": [f"{name}/bias"] + inputs[3:4] if fused[1] == "Prelu" else [f"{name}/bias"],
                   "attr": {"T": attr.get("T", {"type": "DT_FLOAT"})}}
            if fused[1] == "LeakyRelu" and "leakyrelu_alpha" in attr:
                act["attr"]["alpha"] = attr["leakyrelu_alpha"]
            biased["name"] = f"{name}/bias"
            new_nodes.append(act)
        count += 1
    topology["node"] = new_nodes
    return count


PASSES = [unfuse_computed_biases, unfuse_unsupported_activations, flatten_fused_biases]


def apply_passes(model_json: Path, disabled=()) -> dict[str, int]:
    """Run the passes on ``model_json`` in order (except those named in ``disabled``), rewrite it,
    and return what each changed."""
    model = json.loads(model_json.read_text())
    applied = run_in_order(PASSES, model, disabled, kind="TF.js")
    if applied:
        model_json.write_text(json.dumps(model))
    return applied
