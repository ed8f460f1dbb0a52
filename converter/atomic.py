"""Atomic outputs: write beside the target, rename at the end.

A failure or Ctrl-C leaves the target as it was (absent, or the old content). A ``kill -9``
can leave a ``.NAME.partial-PID-*`` folder beside the target; the next run for that target
removes the ones whose process is gone. Output folders get the permissions the umask gives
(``mkdtemp`` alone would make them 0700, unreadable to a web server or a team).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from converter.errors import InputError, OutputExistsError

# Leftovers named without a process id (older versions) are removed once they are this old.
_UNOWNED_STALE_SECONDS = 24 * 3600


def check_writable(target, overwrite: bool, inputs=()) -> Path:
    """Refuse an existing target unless ``overwrite``, and always one that is or contains an input.

    Args:
        target: the output folder.
        overwrite: replace an existing ``target``.
        inputs: the files and folders the command reads; replacing ``target`` must not delete them.

    Raises:
        InputError: ``target`` is, or contains, one of ``inputs``.
        OutputExistsError: ``target`` exists and ``overwrite`` is false.
    """
    target = Path(target)
    resolved = target.resolve()
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if source == resolved or resolved in source.parents:
            raise InputError(f"Output '{target}' {'is' if source == resolved else 'contains'} the input '{given}': "
                             f"writing it would delete the input. Choose another -o/--out folder.")
    if target.exists() and not overwrite:
        raise OutputExistsError(
            f"Output '{target}' already exists. Pass --overwrite (overwrite=True) to replace it."
        )
    return target


def umask() -> int:
    """The process's umask, read without changing it where Linux allows (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_partials(target) -> list[Path]:
    """Delete ``.NAME.partial-*`` / ``.NAME.old-*`` folders beside ``target`` left by dead processes; return them."""
    target = Path(target).absolute()
    removed = []
    if not target.parent.is_dir():
        return removed
    for kind in ("partial", "old"):
        for leftover in target.parent.glob(f".{target.name}.{kind}-*"):
            pid_text = leftover.name[len(f".{target.name}.{kind}-"):].split("-")[0]
            try:
                stale = not _pid_alive(int(pid_text))
            except ValueError:
                stale = time.time() - leftover.stat().st_mtime > _UNOWNED_STALE_SECONDS
            if not stale or leftover.is_symlink():
                continue
            if kind == "old" and (leftover / target.name).is_dir() and not target.exists():
                # Killed between moving the old output aside and moving the new one in: put the old one back.
                (leftover / target.name).rename(target)
            _remove(leftover)
            removed.append(leftover)
    return removed


def remove_stale_files(folder, pattern: str = ".*.partial-*") -> None:
    """Delete temporary files of ``write_atomic`` in ``folder`` whose process is gone."""
    for leftover in Path(folder).glob(pattern):
        try:
            if not _pid_alive(int(leftover.name.rpartition(".partial-")[2].split("-")[0])):
                _remove(leftover)
        except ValueError:
            continue


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _make_dir_beside(target: Path, kind: str) -> Path:
    """``.NAME.KIND-PID-XXXX`` beside ``target``, with umask permissions; a clear error when the parent refuses."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{kind}-{os.getpid()}-", dir=target.parent))
    except OSError as e:
        blocked = next((p for p in [target.parent, *target.parent.parents] if p.exists()), target.parent)
        why = f"'{blocked}' is a file, not a folder" if not blocked.is_dir() else e.strerror
        raise InputError(f"Cannot write output '{target}': {why}") from None
    tmp.chmod(0o777 & ~umask())
    return tmp


@contextlib.contextmanager
def atomic_output_dir(target, overwrite: bool = False, inputs=()):
    """Yield a temporary folder that replaces ``target`` only if the block succeeds.

    Example:
        >>> with atomic_output_dir("out", overwrite=True) as tmp:
        ...     (tmp / "model.json").write_text("{}")
    """
    target = check_writable(target, overwrite, inputs).absolute()
    remove_stale_partials(target)
    tmp = _make_dir_beside(target, "partial")
    try:
        yield tmp
        if target.exists():
            old = _make_dir_beside(target, "old")
            target.rename(old / target.name)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.partial-{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
