"""An unfinished retraining run's checkpoint folder: beside the output, keyed by everything that shapes it.

Example:
    >>> folder = run_dir("out/pets")            # out/.pets.transferjs-run
    >>> prepare_run_dir(folder, fingerprint(fx, dataset, folds, config), resume=True, log=print)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

from converter.atomic import umask, write_atomic
from converter.errors import TransferJSError


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
    if resume and not folder.exists():
        log(f"note: --resume: no interrupted run's checkpoints in {folder}; starting from the beginning")
    if folder.exists() and not (resume and stamp.exists() and _read(stamp) == stamp_text):
        if resume:
            log(f"note: the checkpoints in {folder} are from another model, data or settings; starting over")
        else:
            log(f"note: discarding an interrupted run's checkpoints in {folder} (--resume continues one)")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o777 & ~umask())
    write_atomic(stamp, stamp_text.encode())


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


@contextlib.contextmanager
def discard_unless_checkpointed(folder: Path):
    """Remove the run folder when the run fails on our own error before any checkpoint was written.

    A failure after a checkpoint keeps it, for ``--resume``; Ctrl-C and ``kill -9`` keep it too.
    """
    try:
        yield
    except TransferJSError:
        if folder.is_dir() and not any(folder.glob("*.npz")):
            shutil.rmtree(folder, ignore_errors=True)
        raise
