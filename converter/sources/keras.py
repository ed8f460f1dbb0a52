"""Keras source: ``.keras`` (Keras 3), legacy HDF5 ``.h5`` (Keras 2), SavedModel folders.

Safe mode is on: a ``Lambda`` layer (Python bytecode in the file) or a custom
class is refused unless the user passes ``trust_code`` (and names custom classes).
Keras models are already TensorFlow: they are saved with an explicit serving
signature, no ONNX in between, and keep their weights as variables.

Example:
    >>> src = load_keras_source("mobilenet.keras")
    >>> saved, names = src.to_saved_model(workdir)
"""

from __future__ import annotations

import importlib
import zipfile
from pathlib import Path

import numpy as np

from converter.errors import InputError, UntrustedCodeError
from converter.model import TensorSpec
from converter.runtimes.tensorflow import run_saved_model, signature_specs
from converter.sources.base import SourceModel, sanitize_names


def _image_layout(shape, dtype) -> str | None:
    if len(shape) == 4 and str(dtype).startswith("float") and shape[-1] in (1, 3, 4):
        return "NHWC"
    return None


def load_custom_objects(specs) -> dict:
    """``["pkg.mod:Name", …]`` -> ``{"Name": object}`` (imports code the user named)."""
    objects = {}
    for spec in specs or ():
        mod, sep, name = spec.partition(":")
        if not sep:
            raise InputError(f"Expected --custom-objects as 'package.module:Name'. Received: '{spec}'")
        try:
            objects[name] = getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError) as e:
            raise InputError(f"Cannot import custom object '{spec}': {e}") from None
    return objects


def _load_model(path: Path, trust_code: bool, custom_objects: dict):
    import keras

    try:
        return keras.saving.load_model(str(path), custom_objects=custom_objects, compile=False, safe_mode=not trust_code)
    except Exception as e:
        _raise_if_code_needed(path, str(e))
        if path.suffix == ".h5":
            return _load_keras2_h5(path, trust_code, custom_objects, e)
        raise InputError(f"Cannot load Keras model '{path}': {str(e).splitlines()[0][:300]}") from None


def _raise_if_code_needed(path: Path, text: str) -> None:
    """Turn Keras' refusals to run or find code into one clear error."""
    import re

    if "lambda" in text.lower() and "safe_mode" in text:
        raise UntrustedCodeError(
            f"'{path}' has a Lambda layer: its Python code is stored in the file and runs when loaded. "
            f"Only if you trust its author, pass --trust-code."
        )
    if "Could not locate" in text or "could not be deserialized" in text or "Unknown layer" in text:
        names = sorted(set(re.findall(r"Could not locate (?:class|function) '([\w.]+)'", text))) or ["(see Keras' message)"]
        raise UntrustedCodeError(
            f"'{path}' needs custom Keras code: {', '.join(names)}. Its Python code is not in the file; name "
            f"the module that defines it: --trust-code --custom-objects package.module:{names[0]}"
        )


def _load_keras2_h5(path: Path, trust_code: bool, custom_objects: dict, first_error: Exception):
    # Files written by old Keras 2 releases can carry configs Keras 3 rejects;
    # tf_keras (Keras 2.19) still reads them.
    import tf_keras

    if not trust_code:
        import h5py

        try:
            with h5py.File(path, "r") as f:
                config = f.attrs.get("model_config", "")
        except OSError as e:
            raise InputError(f"Expected a Keras model file. Received: '{path}', which is no readable HDF5 file ({e})") from None
        if b"Lambda" in (config if isinstance(config, bytes) else str(config).encode()):
            raise UntrustedCodeError(f"'{path}' has a Lambda layer: its Python code runs when loaded. Pass --trust-code to allow it.")
    try:
        return tf_keras.models.load_model(str(path), custom_objects=custom_objects, compile=False)
    except Exception as e:
        raise InputError(
            f"Cannot load Keras HDF5 model '{path}': Keras 3 said '{str(first_error).splitlines()[0][:200]}', "
            f"Keras 2 said '{str(e).splitlines()[0][:200]}'"
        ) from None


class KerasSource(SourceModel):
    """A Keras model: runs in Keras, saved with a named serving signature."""

    def __init__(self, model, path=None, details=None):
        names = [t.name.split(":")[0] for t in model.inputs]
        inputs = []
        for t, name in zip(model.inputs, names):
            shape = [None if d is None else int(d) for d in t.shape]
            dtype = str(getattr(t.dtype, "name", t.dtype))
            inputs.append(TensorSpec(name, shape, dtype, _image_layout(shape, dtype)))
        out_names = list(getattr(model, "output_names", None) or [f"output_{i}" for i in range(len(model.outputs))])
        shapes = {n: [None if d is None else int(d) for d in t.shape] for n, t in zip(out_names, model.outputs)}
        super().__init__("keras", inputs, out_names, path, details or {}, runtime="keras", output_shapes=shapes)
        self.model = model

    def write_keras_model(self, folder: Path) -> str | None:
        """Save the model into ``folder``: ``model.keras``, or ``model.h5`` for one only Keras 2 (tf_keras) reads."""
        name = "model.h5" if type(self.model).__module__.startswith("tf_keras") else "model.keras"
        Path(folder).mkdir(parents=True, exist_ok=True)
        self.model.save(str(Path(folder) / name))
        return name

    def _call(self, arrays: list):
        out = self.model(arrays if len(arrays) > 1 else arrays[0], training=False)
        return out if isinstance(out, (list, tuple)) else [out]

    def run(self, samples):
        results = []
        for s in samples:
            out = self._call([s[t.name] for t in self.inputs])
            results.append({n: np.asarray(o) for n, o in zip(self.output_names, out)})
        return results

    def to_saved_model(self, workdir, keep_layout=False, verbose=False, disabled_passes=()):
        import tensorflow as tf

        mapping = sanitize_names([t.name for t in self.inputs] + self.output_names)
        signature = [tf.TensorSpec(t.shape, t.dtype, name=mapping[t.name]) for t in self.inputs]
        source = self

        class Serving(tf.Module):
            def __init__(self):
                super().__init__()
                self.model = source.model

            @tf.function(input_signature=signature)
            def serve(self, *args):
                outs = source._call(list(args))
                return {mapping[n]: o for n, o in zip(source.output_names, outs)}

        module = Serving()
        out = Path(workdir) / "keras_saved_model"
        tf.saved_model.save(module, str(out), signatures={"serving_default": module.serve})
        return out, {v: k for k, v in mapping.items()}


def load_keras_model(path):
    """Load a ``.keras``/``.h5`` file transferjs wrote, in safe mode (no code runs from it).

    Raises:
        InputError, UntrustedCodeError: as ``load_keras_source``.
    """
    return _load_model(Path(path), trust_code=False, custom_objects={})


def load_keras_source(path, trust_code: bool = False, custom_objects=None) -> KerasSource:
    """Load a ``.keras`` / ``.h5`` file or a Keras SavedModel folder.

    Raises:
        UntrustedCodeError: Lambda layers or custom classes without ``trust_code``.
        InputError: the file cannot be read as a Keras model.
    """
    path = Path(path)
    _check_container(path)
    import keras

    model = _load_model(path, trust_code, load_custom_objects(custom_objects))
    details = {"keras": keras.__version__, "file_kind": path.suffix.lstrip(".") or "saved_model"}
    return KerasSource(model, path, details)


def _check_container(path: Path) -> None:
    """A ``.keras`` file is a zip archive and an ``.h5`` file HDF5: say so in a second, before Keras starts."""
    if not path.is_file() or path.suffix.lower() not in (".keras", ".h5"):
        return
    with path.open("rb") as f:
        head = f.read(8)
    is_keras = zipfile.is_zipfile(path) if path.suffix.lower() == ".keras" else head == b"\x89HDF\r\n\x1a\n"
    if not is_keras:
        kind = "a zip archive" if path.suffix.lower() == ".keras" else "an HDF5 file"
        raise InputError(f"Expected a Keras {path.suffix} file ({kind}). Received: '{path}' "
                         f"(starts with bytes {head[:4].hex(' ') or 'none: empty file'}): damaged, or not a Keras model")


class SavedModelSource(SourceModel):
    """A TensorFlow SavedModel folder (e.g. written by Keras 2 ``model.save(dir)``)."""

    def __init__(self, path: Path, signature: str = "serving_default"):

        try:
            ins, outs = signature_specs(path, signature)
        except KeyError:
            raise InputError(f"SavedModel '{path}' has no signature '{signature}'") from None
        except Exception as e:
            raise InputError(f"Cannot load SavedModel '{path}': {str(e).splitlines()[0][:300]}") from None
        inputs = [TensorSpec(k, shape, dtype, _image_layout(shape, dtype)) for k, (shape, dtype) in ins.items()]
        super().__init__("saved_model", inputs, list(outs), path, {"signature": signature},
                         runtime="tensorflow (source SavedModel)", output_shapes={k: s for k, (s, _) in outs.items()})
        self.signature = signature

    def run(self, samples):

        return run_saved_model(self.path, samples, self.signature)

    def to_saved_model(self, workdir, keep_layout=False, verbose=False, disabled_passes=()):
        import shutil

        out = Path(workdir) / "saved_model_copy"
        shutil.copytree(self.path, out)
        return out, {}
