"""Login failures as values: a reason code for the trace and a detail for the operator."""

from __future__ import annotations

from typing import Any


class LoginFailed(Exception):
    """A login was refused; ``reason`` is the stable code shown in traces and tests.

    ``keep_changes``: the login's own transaction commits before the refusal is shown (a
    JIT login wrote what the IdP asserted, and the mapping took the user out for it: that
    deprovisioning or suspension stands, though the login is refused); otherwise it rolls
    back.

    ``idp_fault``: the IdP said it failed (an authorization error response of
    ``server_error`` or ``temporarily_unavailable``), a refusal the client did not cause
    (app/sso/fault_traces.py), whatever its reason."""

    def __init__(self, reason: str, detail: str = "", *,
                 subject: str | None = None, payload: dict[str, Any] | None = None,
                 keep_changes: bool = False, idp_fault: bool = False) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.subject = subject
        self.payload = payload or {}
        self.keep_changes = keep_changes
        self.idp_fault = idp_fault
