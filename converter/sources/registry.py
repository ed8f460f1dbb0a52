"""Which reader loads which source: the format detected from a file's content, then its loader.

Adding a source format is adding its module and one entry here; the pipeline
never asks which format it holds.

Example:
    >>> source = load_source_file("model.onnx", options)
    >>> source.format, source.runtime
    ('onnx', 'onnxruntime')
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from converter.sources.base import SourceModel
from converter.sources.detect import detect_format
from converter.sources.keras import SavedModelSource, load_keras_source
from converter.sources.onnx import load_onnx_source
from converter.sources.tfjs import load_tfjs_source
from converter.sources.torch import load_torch_file


def torch_batch(options) -> str:
    """The batch mode a PyTorch export gets: as asked, or dynamic for ``"auto"``."""
    return "dynamic" if options.batch == "auto" else options.batch


def _onnx(path: Path, options) -> SourceModel:
    return load_onnx_source(path, options.input_shapes, options.batch, options.sample_file)


def _pytorch(path: Path, options) -> SourceModel:
    return load_torch_file(path, options.input_shapes, options.model_factory, options.model_kwargs,
                           options.trust_code, torch_batch(options))


def _keras(path: Path, options) -> SourceModel:
    return load_keras_source(path, options.trust_code, options.custom_objects)


def _tfjs(path: Path, options) -> SourceModel:
    return load_tfjs_source(path)


def _saved_model(path: Path, options) -> SourceModel:
    return SavedModelSource(Path(path))


# format name (what ``detect_format`` returns) -> loader(path, options)
LOADERS: dict[str, Callable[[Path, object], SourceModel]] = {
    "onnx": _onnx,
    "pytorch": _pytorch,
    "keras": _keras,
    "saved_model": _saved_model,
    "tfjs": _tfjs,
}


def load_source_file(path, options) -> SourceModel:
    """Detect ``path``'s format by content and load it with that format's reader.

    Args:
        path: a model file or folder.
        options: the conversion's options (``ConvertOptions``); each reader takes what it needs.

    Raises:
        InputError: unrecognised, unreadable or untrusted file (see each reader).
    """
    return LOADERS[detect_format(path)](Path(path), options)
