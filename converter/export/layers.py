"""TF.js layers models (trainable in JavaScript) from Keras models.

tensorflowjs 4.22 writes a Keras 3 model's topology in Keras 3's own format, which
``@tensorflow/tfjs-layers`` 4.22 refuses ("An InputLayer should be passed either a
`batchInputShape` or an `inputShape`"; tfjs issues 8328, 8358, 8494). The pass here
rewrites the topology into the Keras 2 form TF.js reads: ``batch_input_shape``,
dtype names instead of DTypePolicy objects, ``[[layer, node, tensor, kwargs]]``
inbound nodes, and no Keras 3-only keys.

Example:
    >>> write_layers_model(ConvertedModel.load("out"), Path("bundle/layers"))   # a Keras-sourced model
"""

from __future__ import annotations

import json
import subprocess
import warnings
from pathlib import Path

from converter.errors import InputError, UnsupportedOpsError, UntrustedCodeError
from converter.runtimes.node import js_dir, node_executable
from converter.sources.keras import load_keras_model

# Keras 3 config keys TF.js layers do not know (they make its constructors throw).
_KERAS3_ONLY = {"module", "registered_name", "build_config", "compile_config", "optional", "synchronized",
                "lora_rank", "lora_alpha", "quantization_config"}


def _plain(value):
    """Drop Keras 3-only keys everywhere; a DTypePolicy object becomes its dtype name."""
    if isinstance(value, dict):
        if value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
            return value["config"]["name"]
        return {k: _plain(v) for k, v in value.items() if k not in _KERAS3_ONLY}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _history(arg) -> list:
    """``__keras_tensor__`` args -> ``[[layer, node, tensor, {}], …]``."""
    if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
        layer, node, tensor = arg["config"]["keras_history"]
        return [[layer, node, tensor, {}]]
    if isinstance(arg, (list, tuple)):
        return [h for a in arg for h in _history(a)]
    return []


def _inbound_nodes(nodes: list) -> list:
    result = []
    for node in nodes:
        if isinstance(node, dict) and "args" in node:
            result.append(_history(node["args"]))
        else:
            result.append(node)  # already Keras 2 style
    return result


def _io_layers(value) -> list:
    # Keras 3 writes a single input as ["name", 0, 0]; TF.js wants [["name", 0, 0]].
    if value and isinstance(value[0], str):
        return [value]
    return value


def keras3_to_tfjs_topology(topology: dict) -> dict:
    """Rewrite a tensorflowjs-written Keras 3 ``modelTopology`` into the form TF.js loads."""
    config = topology["model_config"]
    model = config["config"]
    for layer in model["layers"]:
        layer_config = layer["config"]
        if layer["class_name"] == "InputLayer" and "batch_shape" in layer_config:
            layer_config["batch_input_shape"] = layer_config.pop("batch_shape")
        if layer_config.get("seed") is not None:
            layer_config["seed"] = None  # a fixed seed in TF.js draws the same dropout mask at every step
        layer["inbound_nodes"] = _inbound_nodes(layer.get("inbound_nodes", []))
    for key in ("input_layers", "output_layers"):
        if key in model:
            model[key] = _io_layers(model[key])
    topology["model_config"] = _plain(config)
    topology["keras_version"] = "tfjs-layers"
    return topology


# Keras 3 weight names that Keras 2 / TF.js layers name differently, per layer class.
_WEIGHT_RENAMES = {"DepthwiseConv2D": {"kernel": "depthwise_kernel"}}


def _rename_weights(model: dict) -> None:
    classes = {layer["config"]["name"]: layer["class_name"] for layer in model["modelTopology"]["model_config"]["config"]["layers"]}
    for group in model["weightsManifest"]:
        for w in group["weights"]:
            layer, _, var = w["name"].rpartition("/")
            new = _WEIGHT_RENAMES.get(classes.get(layer, ""), {}).get(var)
            if new:
                w["name"] = f"{layer}/{new}"


def keras_to_layers_model(keras_model, out_dir: Path) -> Path:
    """Write ``keras_model`` as a TF.js layers model that ``tf.loadLayersModel`` accepts."""
    out_dir = Path(out_dir)
    # ydf first: tensorflow_decision_forests (imported by tensorflowjs) then prints no welcome banner.
    import ydf  # noqa: F401

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated")
        import tensorflowjs
    tensorflowjs.converters.save_keras_model(keras_model, str(out_dir))
    model_json = out_dir / "model.json"
    model = json.loads(model_json.read_text())
    model["modelTopology"] = keras3_to_tfjs_topology(model["modelTopology"])
    _rename_weights(model)
    model_json.write_text(json.dumps(model))
    return model_json


def tfjs_layer_classes() -> set[str]:
    """The layer classes the installed TF.js can deserialize (asked from TF.js itself)."""
    proc = subprocess.run([node_executable(), str(js_dir() / "layer_classes.mjs")], capture_output=True, text=True, timeout=120)
    return set(json.loads(proc.stdout)["classes"])


def unsupported_layers(keras_model) -> dict[str, list[str]]:
    """Layer class -> layer names, for every layer TF.js layers cannot load."""
    known = tfjs_layer_classes()
    missing: dict[str, list[str]] = {}
    for layer in keras_model.layers:
        cls = type(layer).__name__
        if cls not in known:
            missing.setdefault(cls, []).append(layer.name)
    return missing


def write_layers_model(model, out_dir: Path) -> Path:
    """Write the TF.js layers model of a converted model that has a Keras file (``model.keras_model``).

    Raises:
        UnsupportedOpsError: layer classes TF.js layers cannot load, with the layers (nothing written).
        InputError: the model has no Keras file, or it does not load in safe mode.
    """
    if model.keras_model_path is None:
        raise InputError(f"'{model.directory}' has no Keras model to write a TF.js layers model from")
    try:
        keras_model = load_keras_model(model.keras_model_path)
    except UntrustedCodeError:  # Lambda / custom layers: code a TF.js layers model cannot hold
        raise UnsupportedOpsError("TF.js layers 4.22 (the graph model works)",
                                  {"Lambda or custom layers (Python code)": [model.keras_model]}, ("layer kind", "model")) from None
    missing = unsupported_layers(keras_model)
    if missing:
        raise UnsupportedOpsError("TF.js layers 4.22 (the graph model works)", missing, ("layer class", "layer"))
    return keras_to_layers_model(keras_model, out_dir)
