"""Where a long run is, told on stderr (stdout carries only the final JSON line).

A transformer epoch on two cores takes half an hour; whoever runs `newstag train` in a terminal or a log file sees a
line every few minutes (``NEWSTAG_PROGRESS_SECONDS``, default 300), one an epoch and one a stage.
"""

from __future__ import annotations

import os
import sys
import time


def say(message: str) -> None:
    print(f"newstag train: {message}", file=sys.stderr, flush=True)


def interval() -> float:
    """Seconds between two progress lines within an epoch."""
    return float(os.environ.get("NEWSTAG_PROGRESS_SECONDS", "300"))


class Clock:
    """Elapsed time and an estimate of what is left, from the steps done so far."""

    def __init__(self, total: int):
        self.total, self.every, self.start = total, interval(), time.monotonic()
        self.last = self.start

    def due(self) -> bool:
        """True once every `interval()` seconds."""
        now = time.monotonic()
        if now - self.last < self.every:
            return False
        self.last = now
        return True

    def line(self, done: int) -> str:
        elapsed = time.monotonic() - self.start
        left = elapsed / max(done, 1) * (self.total - done)
        return f"step {done:,}/{self.total:,}: {elapsed / 60:.1f} min in, about {left / 60:.0f} min of training left"
