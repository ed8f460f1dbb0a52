"""The common representation: a SavedModel plus a small typed description.

Every source produces a ``ConvertedModel``; retrain consumes and produces one;
every exporter consumes one. On disk it is a folder::

    OUT/saved_model/   TensorFlow SavedModel, signature ``serving_default``
    OUT/spec.json      this module's description (inputs, outputs, layout, provenance)
    OUT/report.json    what the conversion measured (parity, op histogram, timings)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from converter.errors import InputError

SPEC_FILE = "spec.json"
SAVED_MODEL_DIR = "saved_model"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the serving signature.

    Args:
        name: the signature key (the source's name, sanitized only where TF requires).
        shape: dimensions, ``None`` where dynamic.
        dtype: numpy dtype name (``"float32"``, ``"int32"``, …).
        layout: ``"NHWC"``/``"NCHW"`` for image tensors, else ``None``.
        source_name: the name in the source model, when it differs.
        source_layout: the layout in the source model (``"NCHW"`` for PyTorch images).
        value_range: (low, high) of valid values for integer inputs such as token ids.
        meaning: for outputs, what the values are: ``"probabilities"`` (a softmax ends the
            graph), ``"logits"`` (other classifier rows), ``"features"`` or ``"values"``.
        dim_names: per dim, the symbolic name of a dynamic dim (ONNX ``dim_param``, a torch.export
            symbol) else ``None``; dims of any inputs that share a name have the same size at run
            time (``audio [batch, time]`` and ``h0 [1, batch, 8]``). ``None``: no names known.

    Example:
        >>> TensorSpec("image", [None, 224, 224, 3], "float32", "NHWC")
        >>> TensorSpec("h0", [1, None, 8], "float32", dim_names=(None, "batch", None))
    """

    name: str
    shape: list
    dtype: str
    layout: str | None = None
    source_name: str | None = None
    source_layout: str | None = None
    value_range: tuple | None = None
    meaning: str | None = None
    dim_names: tuple | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "TensorSpec":
        d = dict(d)
        for key in ("value_range", "dim_names"):  # JSON lists; older spec.json files have no dim_names
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)


@dataclass(frozen=True)
class Preprocessing:
    """How raw 0-255 RGB pixels become the model's image input.

    ``x = (pixels * scale - mean) / std`` per channel, after resizing to ``size``.

    Example:
        >>> Preprocessing(size=(224, 224), scale=1 / 255, mean=(0.5,) * 3, std=(0.5,) * 3)
    """

    size: tuple | None = None
    scale: float = 1 / 255
    mean: tuple = (0.0, 0.0, 0.0)
    std: tuple = (1.0, 1.0, 1.0)
    channel_order: str = "RGB"
    baked: bool = False  # True: the graph does all of this itself (raw pixels in)

    @classmethod
    def from_dict(cls, d: dict | None) -> "Preprocessing | None":
        if d is None:
            return None
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True)
class ConvertedModel:
    """A converted model folder: SavedModel plus its description. Immutable: change a copy
    (``dataclasses.replace``).

    Args:
        directory: the folder (``saved_model/``, ``spec.json``).
        inputs, outputs: the serving signature, in the source's order.
        source: provenance (format, path, sha256, …).
        preprocessing: how raw pixels become the image input.
        labels: class names of the first output.
        keras_model: path, relative to ``directory``, of the same model as a ``.keras`` file
            when it came from Keras (what the TF.js layers exporter reads), else ``None``.

    Example:
        >>> m = ConvertedModel.load("out/")
        >>> m.inputs[0].shape
        [None, 224, 224, 3]
    """

    directory: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    source: dict = field(default_factory=dict)
    preprocessing: Preprocessing | None = None
    labels: tuple[str, ...] | None = None
    keras_model: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "directory", Path(self.directory))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(self.labels))

    @property
    def saved_model(self) -> Path:
        return self.directory / SAVED_MODEL_DIR

    @property
    def keras_model_path(self) -> Path | None:
        return self.directory / self.keras_model if self.keras_model else None

    def to_dict(self) -> dict:
        return {
            "format": "transferjs/1",
            "inputs": [dataclasses.asdict(t) for t in self.inputs],
            "outputs": [dataclasses.asdict(t) for t in self.outputs],
            "source": self.source,
            "preprocessing": dataclasses.asdict(self.preprocessing) if self.preprocessing else None,
            "labels": list(self.labels) if self.labels is not None else None,
            "keras_model": self.keras_model,
        }

    def save(self) -> None:
        """Write ``spec.json`` into ``directory``."""
        (self.directory / SPEC_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def moved_to(self, directory) -> "ConvertedModel":
        """The same description for the folder's new place (after an atomic rename)."""
        return dataclasses.replace(self, directory=Path(directory))

    @classmethod
    def load(cls, directory) -> "ConvertedModel":
        """Read a converted model folder.

        Raises:
            InputError: the folder has no readable ``spec.json`` or ``saved_model/``.
        """
        directory = Path(directory)
        spec_path = directory / SPEC_FILE
        if not (directory / SAVED_MODEL_DIR / "saved_model.pb").is_file():
            raise InputError(
                f"Expected a transferjs model folder with saved_model/saved_model.pb. "
                f"Received: '{directory}'"
            )
        try:
            d = json.loads(spec_path.read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"Cannot read '{spec_path}': {e}") from None
        try:
            return cls(
                directory=directory,
                inputs=[TensorSpec.from_dict(t) for t in d["inputs"]],
                outputs=[TensorSpec.from_dict(t) for t in d["outputs"]],
                source=d.get("source", {}),
                preprocessing=Preprocessing.from_dict(d.get("preprocessing")),
                labels=d.get("labels"),
                keras_model=d.get("keras_model"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InputError(f"'{spec_path}' is not a transferjs spec.json ({type(e).__name__}: {e}); "
                             f"convert the model again") from None
