"""The runtimes verification compares, behind one shape: ``Runner(name, run)``.

``run(samples)`` takes one ``{input name: array}`` per sample and returns one
``{output name: array}`` per sample, in the runtime's own names and layouts; the
parity module moves samples and outputs between the source's and the converted
model's layouts and names.

Example:
    >>> tf_runner = tensorflow_runner("out/saved_model")
    >>> js_runner = tfjs_runner("out/tfjs", backend="wasm")
    >>> tf_runner.run(samples)[0]["logits"].shape, js_runner.name
    ((2, 1000), 'tfjs-wasm')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from converter.runtimes.tensorflow import run_saved_model
from converter.runtimes.tfjs_node import run_bundle


@dataclass
class Runner:
    """A runtime that runs a model on samples.

    Args:
        name: for reports (``"torch"``, ``"onnxruntime"``, ``"tensorflow"``, ``"tfjs-wasm"``…).
        run: samples -> outputs, one dict each.
    """

    name: str
    run: Callable[[list[dict]], list[dict]]


def source_runner(source) -> Runner:
    """The source model in its own runtime (torch, onnxruntime, Keras, TF.js …)."""
    return Runner(source.runtime, source.run)


def tensorflow_runner(saved_model_dir, signature: str = "serving_default") -> Runner:
    """A SavedModel's signature in TensorFlow."""
    return Runner("tensorflow", lambda samples: run_saved_model(saved_model_dir, samples, signature))


def tfjs_runner(bundle_dir, backend: str = "wasm", output_names: list[str] | None = None, kind: str = "") -> Runner:
    """A TF.js model (graph or layers) in Node.js with the real runtime.

    Args:
        output_names: rename the outputs, in order (a layers model names them after its layers).
        kind: shown in the name (``"layers"`` gives ``tfjs-layers-wasm``).
    """
    label = f"tfjs-{kind + '-' if kind else ''}{backend}"

    def run(samples):
        result = run_bundle(bundle_dir, samples, backend=backend)
        if output_names is None:
            return result.samples
        return [dict(zip(output_names, s.values())) for s in result.samples]

    return Runner(label, run)
