"""What every source gives the converter: its IO, a way to run it, a SavedModel.

A source module (onnx, torch, keras, …) returns a ``SourceModel``; the converter
never branches on the source format after that: what differs (the runtime that
runs the source, whether a failing conversion can be bisected, whether a Keras
file can be written for TF.js layers models) is carried by the source itself.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from converter.model import TensorSpec
from converter.samples import DYNAMIC_DIM, random_samples

# Longest dynamic dim tried when looking for a length the source runs at (2**16 audio samples: 4 s at 16 kHz).
LONGEST_SAMPLE_DIM = 1 << 16


@dataclass
class SourceModel:
    """A loaded source model.

    Args:
        format: ``"onnx"``, ``"pytorch"``, ``"keras"``, … (for the report).
        inputs: the source's inputs, shapes in the source layout.
        output_names: the source's output names, in order.
        path: the file it came from (``None`` for an in-memory module).
        details: format-specific facts for the report (opset, file kind, …).
        runtime: the name of the runtime ``run`` uses (``"onnxruntime"``, ``"torch"``, …).
        output_shapes: ``{output name: shape}`` where the source knows them (``None`` where dynamic).
    """

    format: str
    inputs: list[TensorSpec]
    output_names: list[str]
    path: Path | None = None
    details: dict = field(default_factory=dict)
    runtime: str = "source"
    output_shapes: dict = field(default_factory=dict)

    def run(self, samples: list[dict]) -> list[dict]:
        """Run the source runtime on samples (source layout); outputs keyed by output name."""
        raise NotImplementedError

    def to_saved_model(self, workdir: Path, keep_layout: bool, verbose: bool, disabled_passes=()) -> tuple[Path, dict[str, str]]:
        """Convert to a SavedModel under ``workdir`` (``disabled_passes``: graph passes not to run).

        Returns:
            The SavedModel folder, and a map from each signature key to the source
            name it stands for (inputs and outputs).
        """
        raise NotImplementedError

    def sample_dim_size(self) -> int:
        """The length to give the dynamic non-batch dims of random parity samples.

        ``DYNAMIC_DIM`` when the source runs at it; otherwise 4x the smallest power-of-two
        length it runs at (a stride-128, kernel-256 conv front-end runs from 256 on, so 1024:
        several frames, not one), or ``DYNAMIC_DIM`` when none up to ``LONGEST_SAMPLE_DIM`` runs.

        Example:
            >>> audio_source.sample_dim_size()
            1024
        """
        if not any(d is None for spec in self.inputs for d in spec.shape[1:]):
            return DYNAMIC_DIM
        size = DYNAMIC_DIM
        while size <= LONGEST_SAMPLE_DIM:
            try:
                self.run(random_samples(self.inputs, 1, dim_size=size))
            except Exception:  # any runtime's "input too short" (a kernel longer than the input)
                size *= 2
                continue
            return DYNAMIC_DIM if size == DYNAMIC_DIM else 4 * size
        return DYNAMIC_DIM

    @property
    def bisectable_graph(self):
        """``(onnx.ModelProto, {source name: name in it})``: the graph a failing conversion can be bisected
        over (``converter.verify.divergence``), once ``to_saved_model`` ran; ``None`` for sources without one."""
        return None

    def write_keras_model(self, folder: Path) -> str | None:
        """Write the source as a Keras file into ``folder`` (what TF.js layers models are made from);
        return its file name, or ``None`` when the source is not a Keras model."""
        return None

    def provenance(self) -> dict:
        d = {"format": self.format, **self.details}
        if self.path is not None:
            d["path"] = str(self.path)
            d["sha256"] = file_sha256(self.path)
        return d


def file_sha256(path: Path) -> str:
    """sha256 of a file, or of every file of a folder in name order."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def sanitize_names(names: list[str]) -> dict[str, str]:
    """Map each name to one TensorFlow accepts as a signature key, unique and stable.

    Example:
        >>> sanitize_names(["input:0", "1", "x"])
        {'input:0': 'input_0', '1': 't_1', 'x': 'x'}
    """
    result, used = {}, set()
    for name in names:
        safe = re.sub(r"[^A-Za-z0-9_]", "_", name) or "t"
        if not safe[0].isalpha():
            safe = "t_" + safe
        base, i = safe, 1
        while safe in used:
            i += 1
            safe = f"{base}_{i}"
        used.add(safe)
        result[name] = safe
    return result
