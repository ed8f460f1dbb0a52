"""Export formats. ``export`` writes a verified TF.js bundle for a converted model.

Example:
    >>> from converter.export import export
    >>> export("out/", "bundle/", ExportOptions(quantize="uint8"))
"""

from __future__ import annotations

from pathlib import Path


def write_tfjs_bundle(model, bundle_dir, options) -> dict:
    """Write the graph model, metadata.json and the Node.js/browser files into ``bundle_dir``.

    Returns:
        ``{"bytes", "passes", "metadata"}``: model size, TF.js passes applied, the metadata.
    """
    from converter.export.bundle import metadata, write_bundle_files
    from converter.export.tfjs import bundle_size, saved_model_to_graph_model
    from converter.runtimes.tensorflow import run_saved_model
    from converter.samples import random_samples

    passes = saved_model_to_graph_model(model.saved_model, bundle_dir, options)
    (outputs,) = run_saved_model(model.saved_model, random_samples(model.inputs, 1, seed=1))
    meta = metadata(model, outputs, options.quantize, bundle_dir)
    write_bundle_files(Path(bundle_dir), meta)
    return {"bytes": bundle_size(bundle_dir), "passes": passes, "metadata": meta}


def export(model_dir, bundle_dir, options=None, overwrite: bool = False, verify: bool = True,
           bake_preprocessing: bool = False, sample_file=None) -> dict:
    """Write the TF.js graph model of ``model_dir`` into ``bundle_dir`` (atomically).

    Args:
        model_dir: a converted model folder (``saved_model/`` + ``spec.json``).
        bundle_dir: the bundle folder to write.
        options: ``ExportOptions`` (quantization, shard size, signature).
        verify: run the bundle in TF.js (Node.js, wasm) against the SavedModel.
        bake_preprocessing: the graph takes raw 0-255 pixels of any size (resize and
            normalization inside), so a JavaScript caller passes decoded images as they are.
        sample_file: a ``.npz`` of real inputs, compared too (e.g. real photos for a quantized bundle).

    Returns:
        ``{"bytes", "weight_bytes", "float32_bytes", "quantize", "parity"}``: bundle, shards and
        float32-equivalent sizes, and the ParityReport dict.

    Raises:
        ParityError: TF.js differs from TensorFlow beyond the tolerance of the mode.
    """
    import tempfile

    from converter.atomic import atomic_output_dir, check_writable
    from converter.errors import ParityError
    from converter.export.bundle import float32_bytes, shard_bytes
    from converter.export.tfjs import ExportOptions
    from converter.model import ConvertedModel
    from converter.parity_run import tensorflow_vs_tfjs
    from converter.verify import TOLERANCES

    options = options or ExportOptions()
    check_writable(bundle_dir, overwrite)
    model = ConvertedModel.load(model_dir)
    result = {"bytes": None, "weight_bytes": None, "float32_bytes": None, "quantize": options.quantize, "parity": None}
    with tempfile.TemporaryDirectory(prefix="transferjs-export-") as scratch, atomic_output_dir(bundle_dir, overwrite) as tmp:
        if bake_preprocessing:
            from converter.graph.preprocessing import bake_preprocessing as bake

            model = bake(model, Path(scratch) / "baked")
        result["bytes"] = write_tfjs_bundle(model, tmp, options)["bytes"]
        result["weight_bytes"], result["float32_bytes"] = shard_bytes(tmp), float32_bytes(tmp)
        if verify:
            # Quantized weights are compared with the float32 SavedModel, by that mode's tolerance.
            parity = tensorflow_vs_tfjs(model, tmp, tolerance=TOLERANCES[options.quantize or "float32"], sample_file=sample_file)
            result["parity"] = parity.to_dict()
            if not parity.ok:
                raise ParityError([parity])
    return result
