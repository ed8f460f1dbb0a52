"""The tfjs-transfer exporter: a backbone and a trainable head, for transfer learning in JavaScript.

The bundle holds ``backbone/`` (a TF.js graph model: image in, features out, with its
own metadata and apps), ``head/`` (a TF.js layers model: features in, probabilities
out), ``labels.json``, the example ``retrain_head.mjs`` with the modules it imports,
a ``package.json`` and a ``README.md``.

Example:
    >>> write_transfer_bundle(backbone, head, ["cat", "dog"], Path("out/tfjs-transfer"))
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from converter.export.bundle import PAGE_FILES, TEMPLATES, write_tfjs_bundle
from converter.export.layers import keras_to_layers_model
from converter.export.tfjs import ExportOptions
from converter.runtimes.node import js_file

# The example and the modules it imports, from the bundle templates (one image decoder for all).
_TEMPLATES = ("retrain_head.mjs", "head.mjs", "decode.mjs", "preprocess.mjs")


def write_transfer_example(folder: Path, labels: list[str]) -> None:
    """Write ``labels.json``, ``retrain_head.mjs`` and its modules, ``package.json`` and ``README.md`` into ``folder``.

    Args:
        folder: the transfer bundle, with ``backbone/`` (written by ``write_bundle_files``) and ``head/``.
        labels: the head's class names, in output order.
    """
    folder = Path(folder)
    (folder / "labels.json").write_text(json.dumps(labels) + "\n")
    for name in _TEMPLATES:
        shutil.copyfile(TEMPLATES / name, folder / name)
    shutil.copyfile(js_file("runtime.mjs"), folder / "runtime.mjs")
    # The backbone bundle pins the same packages (tfjs, the wasm backend, the image decoders).
    package = json.loads((folder / "backbone" / "package.json").read_text())
    package["name"] = "transferjs-transfer"
    (folder / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    # The teaching page: the bundle page, with TF.js from backbone/vendor/ (one copy of the wasm files).
    for name in PAGE_FILES:
        if name != "preprocess.mjs":
            shutil.copyfile(TEMPLATES / name, folder / name)
    page = (folder / "index.html").read_text().replace('src="vendor/', 'src="backbone/vendor/')
    page = page.replace("<body>", '<body data-kind="transfer">', 1)
    (folder / "index.html").write_text(page)
    feature_size = json.loads((folder / "backbone" / "metadata.json").read_text())["outputs"][0]["shape"][-1]
    readme = (TEMPLATES / "transfer_README.md").read_text()
    readme = readme.replace("FEATURE_SIZE", str(feature_size)).replace("LABELS", ", ".join(f"`{label}`" for label in labels))
    (folder / "README.md").write_text(readme)


def write_transfer_bundle(backbone, head, labels: list[str], folder: Path, options: ExportOptions = ExportOptions()) -> dict:
    """Write the tfjs-transfer bundle of a retrained model into ``folder``.

    Args:
        backbone: the ``ConvertedModel`` of the backbone up to its feature node (output ``features``).
        head: the Keras head (features -> probabilities).
        labels: the head's class names, in output order.

    Returns:
        What ``write_tfjs_bundle`` returned for the backbone.
    """
    folder = Path(folder)
    written = write_tfjs_bundle(backbone, folder / "backbone", options)
    keras_to_layers_model(head, folder / "head")
    write_transfer_example(folder, labels)
    return written
