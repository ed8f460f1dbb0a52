"""Run the source, the SavedModel and the TF.js bundle on the same samples.

Samples are made in the source layout; each runtime gets them in its own
layout, and outputs are compared in the source layout.
"""

from __future__ import annotations

import dataclasses

from converter.samples import converted_layout, load_npz_sample, random_samples, to_layout
from converter.verify import ParityReport, compare


def make_samples(source, options) -> list[dict]:
    """The seeded random samples plus the user's ``--sample`` file, source layout."""
    samples = random_samples(source.inputs, options.samples, options.seed)
    if options.sample_file:
        samples.append(load_npz_sample(options.sample_file, source.inputs))
    return samples


def to_converted_inputs(model, samples: list[dict]) -> list[dict]:
    """Source-layout samples -> the converted model's input keys and layouts."""
    return [{t.name: to_layout(s[t.source_name or t.name], t.source_layout, t.layout) for t in model.inputs} for s in samples]


def to_source_outputs(model, outputs: list[dict]) -> list[dict]:
    """Converted outputs -> source output names and layouts."""
    return [{t.source_name or t.name: to_layout(o[t.name], t.layout, t.source_layout) for t in model.outputs if t.name in o} for o in outputs]


def _learn_output_layouts(model, ref: list[dict], converted: list[dict]) -> None:
    # onnx2tf may switch rank-3/4/5 outputs to channels-last; the shapes say so.
    for i, t in enumerate(model.outputs):
        a, b = ref[0].get(t.source_name), converted[0].get(t.name)
        if a is not None and b is not None:
            src_layout, layout = converted_layout(list(a.shape), list(b.shape))
            model.outputs[i] = dataclasses.replace(t, layout=layout, source_layout=src_layout)


def source_vs_tensorflow(source, model, options) -> tuple[list[dict], list[dict], ParityReport]:
    """Compare the source runtime with the SavedModel; return (samples, source outputs, report)."""
    from converter.pipeline import RUNTIME_OF
    from converter.runtimes.tensorflow import run_saved_model

    samples = make_samples(source, options)
    ref = source.run(samples)
    tf_out = run_saved_model(model.saved_model, to_converted_inputs(model, samples))
    _learn_output_layouts(model, ref, tf_out)
    report = compare(RUNTIME_OF[source.format], ref, "tensorflow", to_source_outputs(model, tf_out), options.tolerance)
    return samples, ref, report


def source_vs_tfjs(source, model, bundle_dir, samples, ref, options) -> ParityReport:
    """Run the TF.js bundle in Node.js on the same samples; compare with the source."""
    from converter.pipeline import RUNTIME_OF
    from converter.runtimes.tfjs_node import run_bundle

    from converter.verify import TOLERANCES

    run = run_bundle(bundle_dir, to_converted_inputs(model, samples), backend=options.backend)
    quantize = options.export.quantize if options.export else None
    tolerance = TOLERANCES[quantize] if quantize else options.tolerance  # quantized weights: that mode's bound
    return compare(RUNTIME_OF[source.format], ref, f"tfjs-{run.backend}", to_source_outputs(model, run.samples), tolerance)


def tensorflow_vs_tfjs(model, bundle_dir, samples: int = 3, seed: int = 0, tolerance=None, backend: str = "wasm",
                       sample_file=None) -> ParityReport:
    """Run the SavedModel and the TF.js bundle on the same seeded samples; compare.

    Example:
        >>> report = tensorflow_vs_tfjs(ConvertedModel.load("out"), "out/tfjs")
    """
    from converter.runtimes.tensorflow import run_saved_model
    from converter.runtimes.tfjs_node import run_bundle
    from converter.verify import TOLERANCES

    inputs = random_samples(model.inputs, samples, seed)
    if sample_file:
        inputs.append(load_npz_sample(sample_file, model.inputs))
    ref = run_saved_model(model.saved_model, inputs)
    run = run_bundle(bundle_dir, inputs, backend=backend)
    return compare("tensorflow", ref, f"tfjs-{run.backend}", run.samples, tolerance or TOLERANCES["float32"])


def layers_vs_source(source, layers_dir, samples, ref, options) -> ParityReport:
    """Run a TF.js layers model in Node.js on the samples; compare with the Keras source."""
    from converter.runtimes.tfjs_node import run_bundle

    run = run_bundle(layers_dir, samples, backend=options.backend)
    # A layers model names outputs after its output layers, as the Keras source does.
    outs = [dict(zip(source.output_names, s.values())) for s in run.samples]
    return compare("keras", ref, f"tfjs-layers-{run.backend}", outs, options.tolerance)
