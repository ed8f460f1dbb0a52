"""TF.js source: a ``model.json`` (or its folder) with weight shards, layers or graph model.

Its runtime is the real TF.js (Node.js, wasm): parity compares the original files run
there with the SavedModel in TensorFlow.

- **Layers models** (Keras topology, also Keras 2.x / tfjs 1.x ones): tensorflowjs reads them
  into a Keras model; they keep a Keras file, so a layers bundle can be written again.
- **Graph models** (GraphDef topology, fused ops of old converters, signature blocks): read into
  a GraphDef (``tfjs_graph``) and saved with every float weight as a trainable variable.

Quantized weights (uint8/uint16/float16) are dequantized as TF.js does on load.

Example:
    >>> src = load_tfjs_source("nsfwjs/model.json")
    >>> src.details["tfjs_kind"], src.runtime
    ('graph', 'tfjs-wasm')
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from converter.errors import InputError
from converter.runtimes.tfjs_node import run_bundle
from converter.sources.base import SourceModel, sanitize_names
from converter.sources.keras import KerasSource
from converter.sources.tfjs_files import TfjsFiles, model_json_path, read_tfjs_files
from converter.sources.tfjs_graph import output_name, tfjs_graph_def
from converter.graph.variables import save_graph_with_variables

RUNTIME = "tfjs-wasm (source model.json)"


def run_model_json(model_json: Path, samples: list[dict], backend: str = "wasm") -> list[dict]:
    """Run a TF.js model.json (any file name) in Node.js; outputs keyed by TF.js' names, ``":0"`` dropped."""
    if model_json.name == "model.json":
        result = run_bundle(model_json.parent, samples, backend=backend)
    else:  # the runner reads <folder>/model.json: stage one beside links to the shards
        with tempfile.TemporaryDirectory(prefix="transferjs-tfjs-") as tmp:
            shutil.copy(model_json, Path(tmp) / "model.json")
            for shard in model_json.parent.iterdir():
                if shard.is_file() and shard != model_json:
                    (Path(tmp) / shard.name).symlink_to(shard.resolve())
            result = run_bundle(tmp, samples, backend=backend)
    return [{output_name(k): v for k, v in s.items()} for s in result.samples]


def _details(files: TfjsFiles) -> dict:
    q = sorted({(s.get("quantization") or {}).get("dtype", "float32") for g in files.json["weightsManifest"] for s in g.get("weights", [])})
    return {"tfjs_kind": files.kind, "format_field": files.json.get("format"), "generated_by": files.json.get("generatedBy"),
            "converted_by": files.json.get("convertedBy"), "weights": len(files.weights), "weight_storage": q}


class TfjsLayersSource(KerasSource):
    """A TF.js layers model: read into Keras by tensorflowjs, run as written in TF.js."""

    def __init__(self, model, files: TfjsFiles):
        super().__init__(model, files.path, _details(files))
        self.format, self.runtime, self.model_json = "tfjs", RUNTIME, files.path

    def run(self, samples):
        return run_model_json(self.model_json, samples)


class TfjsGraphSource(SourceModel):
    """A TF.js graph model: a GraphDef with its weights, saved with them as trainable variables."""

    def __init__(self, files: TfjsFiles):
        graph = tfjs_graph_def(files)
        super().__init__("tfjs", graph.inputs, list(graph.output_names), files.path, {**_details(files), "fused_ops_split": graph.fused_split},
                         runtime=RUNTIME, output_shapes=graph.output_shapes)
        self.graph, self.model_json = graph, files.path

    def run(self, samples):
        return run_model_json(self.model_json, samples)

    def to_saved_model(self, workdir, keep_layout=False, verbose=False, disabled_passes=()):
        import tensorflow as tf

        mapping = sanitize_names([t.name for t in self.inputs] + self.output_names)
        placeholders = self.graph.placeholders
        keys = {**{placeholders[t.name]: mapping[t.name] for t in self.inputs},
                **{tensor: mapping[name] for tensor, name in zip(self.graph.outputs, self.output_names)}}
        inputs = [(placeholders[t.name], tf.TensorSpec(t.shape, t.dtype)) for t in self.inputs]
        out = Path(workdir) / "tfjs_saved_model"
        shapes = {t: self.output_shapes.get(n) for t, n in zip(self.graph.outputs, self.output_names)}
        self.details["variables"] = save_graph_with_variables(self.graph.graph_def, inputs, self.graph.outputs, keys, out, shapes)
        return out, {v: k for k, v in mapping.items()}


def _tfjs_loader():
    """tensorflowjs' Keras reader; ydf first, so tensorflow_decision_forests (which tensorflowjs imports)
    neither prints its banner nor reaches for IPython when stdout is not a terminal file."""
    import warnings

    import ydf  # noqa: F401

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"pkg_resources is deprecated")
        from tensorflowjs.converters import keras_tfjs_loader
    return keras_tfjs_loader


def _layers_model(files: TfjsFiles):
    keras_tfjs_loader = _tfjs_loader()
    try:
        return keras_tfjs_loader.load_keras_model(str(files.path))
    except Exception as e:  # tensorflowjs raises ValueError, KeyError, TypeError … for a topology it cannot build
        why = _weights_mismatch(files) or f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        raise InputError(f"Cannot read TF.js layers model '{files.path}': {why}") from None


def _weights_mismatch(files: TfjsFiles) -> str | None:
    """Which weights the topology needs and the manifest lacks, and the other way round (``None``: they match)."""
    try:
        model = _tfjs_loader().load_keras_model(str(files.path), load_weights=False)
    except Exception:
        return None  # the topology itself does not build: the loader's own message says why
    needed = [w.name.split(":")[0] for w in model.weights]
    lacking = [w for w in needed if w not in files.weights]
    extra = [w for w in files.weights if w not in set(needed)]
    if not lacking and not extra:
        return None
    return (f"the weightsManifest does not match the modelTopology: the topology's weight(s) without an entry: "
            f"{', '.join(lacking[:5]) or 'none'}; entries the topology has no weight for: {', '.join(extra[:5]) or 'none'}")


def load_tfjs_source(path) -> SourceModel:
    """Load a TF.js ``model.json`` (or a folder with one): a layers or a graph model.

    Raises:
        InputError: not a TF.js model, a shard missing or short, a manifest that does not match
            the topology (each names the file, weight or node).
        UnsupportedOpsError: ops TensorFlow lacks (exit code 2), every one with its nodes.
    """
    model_json = model_json_path(path)
    if not model_json.is_file():
        raise InputError(f"Expected a TF.js model.json. Received: '{path}' ({'folder without model.json' if Path(path).is_dir() else 'not found'})")
    files = read_tfjs_files(model_json)
    if files.kind == "layers":
        return TfjsLayersSource(_layers_model(files), files)
    return TfjsGraphSource(files)
