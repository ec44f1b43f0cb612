"""At most one log line per interval for an error that every request repeats (a
misconfiguration: the schema behind the code, a pooler dropping prepared statements)."""

from __future__ import annotations

import time


class EveryInterval:
    """``due()`` is true at most once per ``seconds`` in this process, and on its first call."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last = -seconds

    def due(self) -> bool:
        """Whether to log now (and, if so, not again for ``seconds``)."""
        now = time.monotonic()
        if now - self._last < self.seconds:
            return False
        self._last = now
        return True
