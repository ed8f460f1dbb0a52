"""Where transferjs keeps what it can recompute: $TRANSFERJS_CACHE, else ~/.cache/transferjs.

Example:
    >>> cache_root() / "features"
    PosixPath('/home/me/.cache/transferjs/features')
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache folder: ``$TRANSFERJS_CACHE``, else ``$XDG_CACHE_HOME/transferjs`` (``~/.cache/transferjs``)."""
    base = os.environ.get("TRANSFERJS_CACHE")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "transferjs"
