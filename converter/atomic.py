"""Atomic output folders: write beside the target, rename at the end.

A failure or Ctrl-C leaves the target as it was (absent, or the old content).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from converter.errors import OutputExistsError


def check_writable(target, overwrite: bool) -> Path:
    """Refuse an existing target unless ``overwrite``; return it as a Path.

    Raises:
        OutputExistsError: ``target`` exists and ``overwrite`` is false.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise OutputExistsError(
            f"Output '{target}' already exists. Pass --overwrite (overwrite=True) to replace it."
        )
    return target


@contextlib.contextmanager
def atomic_output_dir(target, overwrite: bool = False):
    """Yield a temporary folder that replaces ``target`` only if the block succeeds.

    Example:
        >>> with atomic_output_dir("out", overwrite=True) as tmp:
        ...     (tmp / "model.json").write_text("{}")
    """
    target = check_writable(target, overwrite).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            target.rename(old / target.name)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
