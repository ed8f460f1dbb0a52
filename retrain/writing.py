"""What a retraining run writes: the classifier (SavedModel + TF.js bundle), the tfjs-transfer pair, the reports.

Example:
    >>> model = write_outputs(Path("out/pets"), False, backbone, fx, (graph, head), labels, report, seconds, True)
    >>> model.outputs[0].name
    'probabilities'
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from converter.atomic import atomic_output_dir
from converter.errors import ParityError
from converter.export.bundle import write_tfjs_bundle
from converter.export.tfjs import ExportOptions
from converter.export.transfer import write_transfer_bundle
from converter.model import ConvertedModel, TensorSpec
from converter.verify.parity import tensorflow_vs_tfjs
from retrain.report import write_report_html
from retrain.report_gallery import write_thumbnails
from retrain.runtime_check import score_in_runtimes


def saved_model_of(function, folder: Path, input_spec, output: str, tracked=()) -> None:
    """``function`` (image batch → tensor) as a SavedModel whose signature returns ``{output: …}``.

    ``tracked``: the variables and Keras models ``function`` reads (saved with it).
    """
    import tensorflow as tf

    class Retrained(tf.Module):
        def __init__(self):
            super().__init__()
            self.tracked = list(tracked)

        @tf.function(input_signature=[input_spec])
        def serve(self, image):
            return {output: function(image)}

    module = Retrained()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})


def score_check_model(backbone, fx, check_model, labels, check_items) -> dict:
    """Export the check model (trained without ``check_items``) as the delivered one is; score it in TF and TF.js."""
    with tempfile.TemporaryDirectory(prefix="transferjs-check-") as work:
        model, bundle, _ = write_classifier(Path(work), backbone, fx, check_model, labels, Path(work).name)
        result = score_in_runtimes(model, bundle, check_items)
    result.pop("tfjs_probabilities")
    return result


def write_classifier(folder: Path, backbone, fx, graph_and_head, labels, name: str, path=None):
    """``folder/saved_model`` (image in, ``probabilities`` out), ``spec.json`` and ``folder/tfjs``.

    Returns:
        ``(ConvertedModel, bundle folder, what write_tfjs_bundle reported)``.
    """
    import tensorflow as tf


    graph, head = graph_and_head
    (inp,) = backbone.inputs
    spec = tf.TensorSpec([None, *fx.input.shape[1:]], tf.float32, name=inp.name)
    saved_model_of(lambda x: head(graph(x), training=False), folder / "saved_model", spec, "probabilities",
                 [head, *graph.trainable_variables])
    model = ConvertedModel(
        folder, inputs=[inp], outputs=[TensorSpec("probabilities", [None, len(labels)], "float32", meaning="probabilities")],
        source={"format": "retrained", "path": str(path or folder), "backbone": str(backbone.directory), "name": name},
        preprocessing=backbone.preprocessing, labels=labels,
    )
    model.save()
    return model, folder / "tfjs", write_tfjs_bundle(model, folder / "tfjs", ExportOptions())


def write_outputs(out, overwrite, backbone, fx, delivered, labels, report, seconds, verify, score_items=None):
    """Write ``out`` atomically: combined SavedModel, TF.js bundle, transfer-learning bundle, reports.

    ``score_items``: held-out ``(path, label)`` the delivered model never trained on (``--no-refit``):
    its own bundle is scored on them in TF.js beside its SavedModel.
    """
    import tensorflow as tf


    t = time.perf_counter()
    graph, head = delivered
    (inp,) = backbone.inputs
    spec = tf.TensorSpec([None, *fx.input.shape[1:]], tf.float32, name=inp.name)
    with tempfile.TemporaryDirectory() as work, atomic_output_dir(out, overwrite) as tmp:
        model, bundle, written = write_classifier(tmp, backbone, fx, delivered, labels, Path(out).name, path=Path(out))
        features = ConvertedModel(
            Path(work), inputs=[inp], outputs=[TensorSpec("features", [None, fx.dim], "float32", meaning="features")],
            source={"format": "retrained-backbone", "backbone": str(backbone.directory), "name": "backbone"},
            preprocessing=backbone.preprocessing,
        )
        saved_model_of(graph, features.saved_model, spec, "features", graph.trainable_variables)
        features.save()
        transfer = tmp / "tfjs-transfer"
        write_transfer_bundle(features, head, labels, transfer)
        report["tfjs"] = {"bytes": written["bytes"], "passes": written["passes"],
                          "transfer": {"backbone": "tfjs-transfer/backbone/model.json", "head": "tfjs-transfer/head/model.json"}}
        seconds["export"] = time.perf_counter() - t
        if score_items is not None:
            t = time.perf_counter()
            report["runtime_check"] = score_in_runtimes(model, bundle, score_items)
            report["runtime_check"].pop("tfjs_probabilities")
            seconds["runtime_check"] = time.perf_counter() - t
        if verify:
            parity = tensorflow_vs_tfjs(model, bundle)
            backbone_parity = tensorflow_vs_tfjs(features, transfer / "backbone")
            report["parity_tfjs"] = parity.to_dict()
            report["parity_tfjs_backbone"] = backbone_parity.to_dict()
            if not (parity.ok and backbone_parity.ok):
                raise ParityError([r for r in (parity, backbone_parity) if not r.ok])
        report["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
        write_thumbnails(report["misclassified"], tmp)
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        write_report_html(report, tmp)
    return model.moved_to(out)
