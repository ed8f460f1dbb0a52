"""What a conversion measured, typed: the stages it reached, parity per runtime pair, op histograms, timings.

A ``ConversionReport`` reads like the ``report.json`` it writes (it is a read-only
mapping), and every error a conversion raises carries the report as far as it got
(``err.report``), so a tool that wants to know how far a conversion went reads that.

Example:
    >>> report = ConversionReport(source={"format": "onnx"})
    >>> with report.stage("load_source"):
    ...     ...
    >>> report.stages, report["seconds"]["load_source"] >= 0
    (['load_source'], True)
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ConversionReport(Mapping):
    """The report of one ``convert`` call; ``to_dict()`` is ``report.json``.

    Args:
        source: the source's provenance (format, path, sha256, format details).
        versions: versions of the converting stack.
        stages: the stages that finished, in order.
        failed_stage: the stage that raised, if one did.
        seconds: seconds per stage.
        parity: runtime pair (``"tensorflow"``, ``"tfjs"``) -> ``ParityReport.to_dict()``.
        op_histogram: op type -> count in the SavedModel.
        tfjs: the bundle's size, passes, op histogram, layers model.
        model: the converted model's description (``ConvertedModel.to_dict()``).
    """

    source: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    stages: list = field(default_factory=list)
    failed_stage: str | None = None
    seconds: dict = field(default_factory=dict)
    parity: dict = field(default_factory=dict)
    op_histogram: dict | None = None
    tfjs: dict | None = None
    model: dict | None = None

    @contextlib.contextmanager
    def stage(self, name: str):
        """Time a stage; it counts as reached only when the block finishes."""
        t0 = time.perf_counter()
        try:
            yield
        except BaseException:
            self.failed_stage = self.failed_stage or name
            raise
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 3)
        self.stages.append(name)

    def to_dict(self) -> dict:
        d = {"source": self.source, "versions": self.versions, "stages": list(self.stages), "failed_stage": self.failed_stage, "parity": self.parity,
             "op_histogram": self.op_histogram, "model": self.model, "seconds": self.seconds}
        if self.tfjs is not None:
            d["tfjs"] = self.tfjs
        return d

    def write(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, default=float) + "\n")

    def __getitem__(self, key):
        return self.to_dict()[key]

    def __iter__(self):
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())
