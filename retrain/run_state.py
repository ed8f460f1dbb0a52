"""An unfinished retraining run's checkpoint folder: beside the output, keyed by everything that shapes it.

Example:
    >>> folder = run_dir("out/pets")            # out/.pets.transferjs-run
    >>> prepare_run_dir(folder, fingerprint(fx, dataset, folds, config), resume=True, log=print)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path


def run_dir(out) -> Path:
    """Where an unfinished run keeps its checkpoints: a hidden folder beside ``out``."""
    out = Path(out).absolute()
    return out.parent / f".{out.name}.transferjs-run"


def fingerprint(fx, dataset, folds, config) -> str:
    """A hash of the model's features, the settings, the images and the folds: checkpoints of another run never resume."""
    text = json.dumps([fx.key, dataclasses.asdict(config), [(str(p), y) for p, y in dataset.items],
                       [list(map(int, fold)) for fold in folds]], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prepare_run_dir(folder: Path, stamp_text: str, resume: bool, log) -> None:
    """Keep ``folder`` for ``--resume`` when its stamp matches; otherwise start it afresh, saying why."""
    stamp = folder / "fingerprint"
    if folder.exists() and not (resume and stamp.exists() and stamp.read_text() == stamp_text):
        if resume:
            log(f"note: the checkpoints in {folder} are from another model, data or settings; starting over")
        else:
            log(f"note: discarding an interrupted run's checkpoints in {folder} (--resume continues one)")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp.write_text(stamp_text)
