"""Progress bars on stderr: redrawn in place on a terminal, one line per finished bar otherwise.

Example:
    >>> bar = Progress("features", total=857)
    >>> bar.update(32)                        # features [##------------------]  32/857  3.1 s
    >>> bar.close("cached 0, computed 857")
"""

from __future__ import annotations

import sys
import time


class Progress:
    """A text progress bar; ``enabled=False`` makes every call a no-op."""

    def __init__(self, label: str, total: int, enabled: bool = True, stream=None, width: int = 24):
        self.label, self.total, self.enabled, self.width = label, max(int(total), 1), enabled, width
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.done, self.start, self.note = 0, time.perf_counter(), ""

    def _line(self) -> str:
        filled = int(self.width * min(self.done, self.total) / self.total)
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        bar = "#" * filled + "-" * (self.width - filled)
        timing = f"{elapsed:5.1f} s" + (f", ~{eta:.0f} s left" if self.done < self.total and self.done else "")
        return f"{self.label} [{bar}] {self.done}/{self.total}  {timing}  {self.note}".rstrip()

    def update(self, n: int = 1, note: str | None = None) -> None:
        self.done += n
        if note is not None:
            self.note = note
        if self.enabled and self.tty:
            self.stream.write("\r" + self._line() + "\x1b[K")
            self.stream.flush()

    def close(self, note: str | None = None) -> None:
        if note is not None:
            self.note = note
        if self.enabled:
            self.stream.write(("\r" if self.tty else "") + self._line() + ("\x1b[K\n" if self.tty else "\n"))
            self.stream.flush()
