"""Login failures as values: a reason code for the trace and a detail for the operator."""

from __future__ import annotations

from typing import Any


class LoginFailed(Exception):
    """A login was refused; ``reason`` is the stable code shown in traces and tests."""

    def __init__(self, reason: str, detail: str = "", *,
                 subject: str | None = None, payload: dict[str, Any] | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.subject = subject
        self.payload = payload or {}
