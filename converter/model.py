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

    Example:
        >>> TensorSpec("image", [None, 224, 224, 3], "float32", "NHWC")
    """

    name: str
    shape: list
    dtype: str
    layout: str | None = None
    source_name: str | None = None
    source_layout: str | None = None
    value_range: tuple | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "TensorSpec":
        d = dict(d)
        if d.get("value_range") is not None:
            d["value_range"] = tuple(d["value_range"])
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


@dataclass
class ConvertedModel:
    """A converted model folder: SavedModel plus its description.

    Example:
        >>> m = ConvertedModel.load("out/")
        >>> m.inputs[0].shape
        [None, 224, 224, 3]
    """

    directory: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    source: dict = field(default_factory=dict)
    preprocessing: Preprocessing | None = None
    labels: list[str] | None = None

    @property
    def saved_model(self) -> Path:
        return self.directory / SAVED_MODEL_DIR

    def to_dict(self) -> dict:
        return {
            "format": "transferjs/1",
            "inputs": [dataclasses.asdict(t) for t in self.inputs],
            "outputs": [dataclasses.asdict(t) for t in self.outputs],
            "source": self.source,
            "preprocessing": dataclasses.asdict(self.preprocessing) if self.preprocessing else None,
            "labels": self.labels,
        }

    def save(self) -> None:
        """Write ``spec.json`` into ``directory``."""
        (self.directory / SPEC_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

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
        return cls(
            directory=directory,
            inputs=[TensorSpec.from_dict(t) for t in d["inputs"]],
            outputs=[TensorSpec.from_dict(t) for t in d["outputs"]],
            source=d.get("source", {}),
            preprocessing=Preprocessing.from_dict(d.get("preprocessing")),
            labels=d.get("labels"),
        )
