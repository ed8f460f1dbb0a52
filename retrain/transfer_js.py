"""The JavaScript side of transfer learning: the files that retrain the head in Node.js.

``folder`` already holds ``backbone/`` (TF.js graph model, features out) and ``head/`` (TF.js layers
model); this adds ``labels.json``, the example ``retrain_head.mjs`` with the modules it imports, a
``package.json`` and a ``README.md``.

Example:
    >>> write_transfer_example(Path("out/tfjs-transfer"), ["cat", "dog"])
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

# The example and the modules it imports, from the bundle templates (one image decoder for all).
_TEMPLATES = ("retrain_head.mjs", "decode.mjs", "preprocess.mjs")


def write_transfer_example(folder: Path, labels: list[str]) -> None:
    """Write ``labels.json``, ``retrain_head.mjs`` and its modules, ``package.json`` and ``README.md`` into ``folder``.

    Args:
        folder: the transfer bundle, with ``backbone/`` (written by ``write_bundle_files``) and ``head/``.
        labels: the head's class names, in output order.
    """
    from converter.export.bundle import TEMPLATES
    from converter.runtimes.tfjs_node import js_dir

    folder = Path(folder)
    (folder / "labels.json").write_text(json.dumps(labels) + "\n")
    for name in _TEMPLATES:
        shutil.copyfile(TEMPLATES / name, folder / name)
    shutil.copyfile(js_dir() / "runtime.mjs", folder / "runtime.mjs")
    # The backbone bundle pins the same packages (tfjs, the wasm backend, the image decoders).
    package = json.loads((folder / "backbone" / "package.json").read_text())
    package["name"] = "transferjs-transfer"
    (folder / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    feature_size = json.loads((folder / "backbone" / "metadata.json").read_text())["outputs"][0]["shape"][-1]
    readme = (TEMPLATES / "transfer_README.md").read_text()
    readme = readme.replace("FEATURE_SIZE", str(feature_size)).replace("LABELS", ", ".join(f"`{label}`" for label in labels))
    (folder / "README.md").write_text(readme)
