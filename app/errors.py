"""Domain errors. Raised below the views; each blueprint maps them to its wire format once."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a service raises on purpose."""

    code = "error"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class NotFound(DomainError):
    """The resource does not exist, or is not visible to the caller."""

    code = "not_found"


class Conflict(DomainError):
    """A uniqueness rule would be broken (RFC 7644 §3.3 scimType uniqueness)."""

    code = "conflict"


class InvalidInput(DomainError):
    """The input is well-formed but its values are not acceptable."""

    code = "invalid_input"


class PreconditionFailed(DomainError):
    """A version precondition (If-Match) does not hold (RFC 7644 §3.14)."""

    code = "precondition_failed"


class Unauthorized(DomainError):
    """Missing, unknown, expired or revoked credentials."""

    code = "unauthorized"


class Forbidden(DomainError):
    """Authenticated, but not allowed to do this."""

    code = "forbidden"


class CursorExpired(DomainError):
    """A feed cursor stands before events the retention purge deleted: reading on from it
    would skip them (``410``; the portal resyncs)."""

    code = "cursor_expired"


class MigrationBlocked(RuntimeError):
    """A migration found data only an operator can resolve; nothing was changed."""
