"""A call on a background thread whose result a test reads after joining it."""

from __future__ import annotations

import threading
from typing import Any


def background(target: Any, *, start: bool = False) -> tuple[threading.Thread, dict[str, Any]]:
    """``target`` on a daemon thread (started if ``start``); its result, or the exception
    it raised (for the caller's assertions), lands in the dict under ``result``."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = target()
        except BaseException as exc:  # reported by the callers' assertions
            outcome["result"] = exc

    thread = threading.Thread(target=run, daemon=True)
    if start:
        thread.start()
    return thread, outcome
