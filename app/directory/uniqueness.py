"""Turning a lost race on a unique index into a Conflict (RFC 7644 §3.3 uniqueness)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict


def flush_unique(session: Session, index_markers: tuple[str, ...], detail: str,
                 field: str) -> None:
    """Flush; an IntegrityError naming one of ``index_markers`` becomes a Conflict.

    The services check uniqueness first; this catches the concurrent create that passed the
    same check in another transaction (PostgreSQL) before either committed.
    """
    try:
        session.flush()
    except IntegrityError as exc:
        message = str(exc.orig).lower()
        if any(marker in message for marker in index_markers):
            raise Conflict(detail, field=field) from None
        raise
