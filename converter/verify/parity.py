"""Parity checks of a conversion: the same samples through two runtimes, compared in the source's terms.

Samples are made in the source layout; each runtime gets them in its own
layout, and outputs are compared in the source layout and names.

Example:
    >>> samples, ref, report = source_vs_tensorflow(source, model, samples=make_samples(source.inputs, 3))
    >>> report.ok
    True
"""

from __future__ import annotations

from converter.layout import to_layout
from converter.samples import DYNAMIC_DIM, load_npz_sample, random_samples
from converter.verify.compare import ParityReport, compare
from converter.verify.runners import Runner, source_runner, tensorflow_runner, tfjs_runner
from converter.verify.tolerance import TOLERANCES, Tolerance


def make_samples(inputs, n: int = 3, seed: int = 0, sample_file=None, dim_size: int = DYNAMIC_DIM) -> list[dict]:
    """``n`` seeded random samples (valid ranges, source layout; dynamic dims ``dim_size`` long) plus the user's ``--sample`` file."""
    samples = random_samples(inputs, n, seed, dim_size)
    if sample_file:
        samples.append(load_npz_sample(sample_file, inputs))
    return samples


def to_converted_inputs(model, samples: list[dict]) -> list[dict]:
    """Source-layout samples -> the converted model's input keys and layouts."""
    return [{t.name: to_layout(s[t.source_name or t.name], t.source_layout, t.layout) for t in model.inputs} for s in samples]


def to_source_outputs(model, outputs: list[dict]) -> list[dict]:
    """Converted outputs -> source output names and layouts (outputs the model does not list kept as they are)."""
    specs = {t.name: t for t in model.outputs}
    result = []
    for o in outputs:
        d = {}
        for key, value in o.items():
            t = specs.get(key)
            d[(t.source_name or t.name) if t else key] = to_layout(value, t.layout, t.source_layout) if t else value
        result.append(d)
    return result


def converted_check(reference: Runner, ref: list[dict], candidate: Runner, model, samples: list[dict],
                    tolerance: Tolerance) -> ParityReport:
    """Run ``candidate`` (a converted model) on ``samples``; compare with ``ref`` in the source's terms."""
    got = candidate.run(to_converted_inputs(model, samples))
    meanings = {t.source_name or t.name: t.meaning for t in model.outputs}
    return compare(reference.name, ref, candidate.name, to_source_outputs(model, got), tolerance, meanings)


def source_vs_tensorflow(source, model, samples: list[dict], tolerance: Tolerance = Tolerance()):
    """Compare the source runtime with the SavedModel; return (source outputs, report)."""
    reference = source_runner(source)
    ref = reference.run(samples)
    return ref, converted_check(reference, ref, tensorflow_runner(model.saved_model), model, samples, tolerance)


def source_vs_tfjs(source, model, bundle_dir, samples, ref, tolerance: Tolerance, backend: str = "wasm") -> ParityReport:
    """Run the TF.js bundle in Node.js on the same samples; compare with the source's outputs ``ref``."""
    return converted_check(source_runner(source), ref, tfjs_runner(bundle_dir, backend), model, samples, tolerance)


def layers_vs_source(source, layers_dir, samples, ref, tolerance: Tolerance, backend: str = "wasm") -> ParityReport:
    """Run a TF.js layers model in Node.js on the samples (source layout); compare with the Keras source."""
    # A layers model names outputs after its output layers, as the Keras source does.
    candidate = tfjs_runner(layers_dir, backend, output_names=source.output_names, kind="layers")
    return compare(source.runtime, ref, candidate.name, candidate.run(samples), tolerance)


def tensorflow_vs_tfjs(model, bundle_dir, samples: int = 3, seed: int = 0, tolerance: Tolerance | None = None,
                       backend: str = "wasm", sample_file=None) -> ParityReport:
    """Run the SavedModel and the TF.js bundle on the same seeded samples; compare.

    Example:
        >>> report = tensorflow_vs_tfjs(ConvertedModel.load("out"), "out/tfjs")
    """
    inputs = make_samples(model.inputs, samples, seed, sample_file)
    reference, candidate = tensorflow_runner(model.saved_model), tfjs_runner(bundle_dir, backend)
    return compare(reference.name, reference.run(inputs), candidate.name, candidate.run(inputs),
                   tolerance or TOLERANCES["float32"], {t.name: t.meaning for t in model.outputs})
