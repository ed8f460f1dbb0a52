"""Weights a TF.js graph model computes once, when it first runs, instead of on every run.

A plain ``tf.loadGraphModel`` runs a model.json's ``modelInitializer`` graph once (TF.js made it
for hash tables) and feeds each output listed in ``initializerSignature`` to the main graph's
input of the same ``resourceId`` (a Placeholder listed in ``signature.inputs``). So a weight that
is an expression of stored weights, such as a per-channel kernel ``Mul(W / s, s)``, costs nothing
per run: the main graph reads a ready tensor, exactly as it reads a float32 weight, and the
wasm backend's fused kernels (which cache their packed filter per tensor) stay as fast.

Before::  main:  k/per_channel = Mul(k, k/channel_scale);  y = _FusedConv2D(x, k/per_channel, b)
After::   init:  k/per_channel/init = Mul(k, k/channel_scale)      (once, at the first run)
          main:  k/per_channel = Placeholder  (signature input, resourceId r)
                 y = _FusedConv2D(x, k/per_channel, b)

The captured inputs are not the caller's: ``model.predict(x)`` and ``model.execute({image: x})``
take the image alone (TF.js fills the rest), but ``model.inputs`` lists them too
(``user_inputs`` in runtime.mjs leaves them out).

A limit of TF.js 4.22 (``GraphModel.execute``): the initializer runs inside the first
``execute``; when that call is inside ``tf.tidy``, the tidy disposes the computed weights and
every later call fails ("Cannot read properties of undefined (reading 'backend')"). So a
bundle written this way must run once outside ``tf.tidy`` first (``runtime.mjs``'s
``loadBundle`` and the bundle's page do), which is why it is an option, not the default.

Example:
    >>> computed_at_load(model_json, ["k/per_channel"], {"k/per_channel": [3, 3, 16, 32]})
    >>> model_json["initializerSignature"]["outputs"]["k/per_channel/init:0"]["resourceId"]
    0
"""

from __future__ import annotations

INIT_SUFFIX = "/init"


def _tensor_shape(shape: list[int]) -> dict:
    return {"dim": [{"size": str(int(d))} for d in shape]}


def captured_inputs(model: dict) -> set[str]:
    """Signature input keys that TF.js fills from the initializer (they carry a ``resourceId``)."""
    inputs = (model.get("signature") or {}).get("inputs") or {}
    return {key for key, spec in inputs.items() if spec.get("resourceId") is not None}


def computed_at_load(model: dict, names: list[str], shapes: dict[str, list[int]]) -> None:
    """Move main-graph nodes that read only Const weights into ``model``'s initializer graph.

    Args:
        model: a graph model.json, changed in place: each named node (and the Const nodes only
            it reads) moves into ``modelInitializer`` as ``name/init``; the main graph gets a
            float32 Placeholder ``name``, a signature input with a ``resourceId``, which TF.js
            feeds from the initializer output of the same ``resourceId``.
        names: the nodes to move (float32, one output, every input a Const).
        shapes: ``{name: shape}`` of their outputs.
    """
    topology = model["modelTopology"]
    by_name = {n["name"]: n for n in topology["node"]}
    initializer = model.setdefault("modelInitializer", {"node": [], "versions": topology.get("versions", {})})
    init_nodes = initializer.setdefault("node", [])
    outputs = model.setdefault("initializerSignature", {}).setdefault("outputs", {})
    inputs = model.setdefault("signature", {}).setdefault("inputs", {})
    taken = [spec.get("resourceId") for spec in [*outputs.values(), *inputs.values()]]
    resource = max([r for r in taken if r is not None], default=-1) + 1
    have = {n["name"] for n in init_nodes}
    for name in names:
        node = by_name[name]
        for tensor in node.get("input", []):
            const = by_name[tensor.split(":")[0]]
            if const["op"] != "Const":
                raise ValueError(f"node '{name}' reads '{const['name']}' ({const['op']}); only Const inputs can move to the initializer")
            if const["name"] not in have:
                init_nodes.append(const)
                have.add(const["name"])
        init_nodes.append({**node, "name": name + INIT_SUFFIX})
        shape = _tensor_shape(shapes[name])
        outputs[name + INIT_SUFFIX + ":0"] = {"name": name + INIT_SUFFIX + ":0", "dtype": "DT_FLOAT", "tensorShape": shape,
                                             "resourceId": resource}
        inputs[name] = {"name": name + ":0", "dtype": "DT_FLOAT", "tensorShape": shape, "resourceId": resource}
        by_name[name] = {"name": name, "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}, "shape": {"shape": shape}}}
        resource += 1
    read = {i.split(":")[0].lstrip("^") for n in by_name.values() for i in n.get("input", [])}
    topology["node"] = [by_name[n["name"]] for n in topology["node"]
                        if n["name"] not in have or n["name"] in read or n["op"] != "Const"]


def inline_initializer(model: dict) -> dict:
    """``model`` with each captured input computed in its main graph again (for TensorFlow, which
    has no initializer graph): the initializer's nodes join the main graph and the Placeholder
    becomes an ``Identity`` of the initializer output with the same ``resourceId``.

    Initializer outputs no input captures (e.g. hash tables) are left where they are.

    Example:
        >>> [n["op"] for n in inline_initializer(model_json)["modelTopology"]["node"]][-1]
        'Identity'
    """
    captured = captured_inputs(model)
    if not captured:
        return model
    by_resource = {spec["resourceId"]: spec["name"] for spec in model.get("initializerSignature", {}).get("outputs", {}).values()}
    inputs = model["signature"]["inputs"]
    source = {inputs[k]["name"].split(":")[0]: by_resource.get(inputs[k]["resourceId"]) for k in captured}
    main = model["modelTopology"]["node"]
    names = {n["name"] for n in main}
    nodes = [n for n in main if n["name"] not in source or not n["op"].startswith("Placeholder")]
    nodes += [n for n in model["modelInitializer"].get("node", []) if n["name"] not in names]
    nodes += [{"name": name, "op": "Identity", "input": [tensor], "attr": {"T": {"type": "DT_FLOAT"}}}
              for name, tensor in source.items() if tensor]
    out = {**model, "modelTopology": {**model["modelTopology"], "node": nodes},
           "signature": {**model["signature"], "inputs": {k: v for k, v in inputs.items() if k not in captured}}}
    out.pop("modelInitializer", None)
    out.pop("initializerSignature", None)
    return out
