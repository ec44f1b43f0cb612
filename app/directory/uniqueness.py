"""Turning a lost race on a unique index into a Conflict (RFC 7644 §3.3 uniqueness)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db import insert_row
from app.errors import Conflict


@contextmanager
def conflict_on(index_markers: tuple[str, ...], detail: str, field: str) -> Iterator[None]:
    """An IntegrityError naming one of ``index_markers`` becomes a Conflict.

    The services check uniqueness first; this catches the concurrent create that passed the
    same check in another transaction (PostgreSQL) before either committed.
    """
    try:
        yield
    except IntegrityError as exc:
        message = str(exc.orig).lower()
        if any(marker in message for marker in index_markers):
            raise Conflict(detail, field=field) from None
        raise


def flush_unique(session: Session, index_markers: tuple[str, ...], detail: str,
                 field: str) -> None:
    """Flush, with a lost uniqueness race as a Conflict (``conflict_on``)."""
    with conflict_on(index_markers, detail, field):
        session.flush()


_M = TypeVar("_M")


def insert_unique(session: Session, model: type[_M], values: dict[str, Any],
                  index_markers: tuple[str, ...], detail: str, field: str) -> _M:
    """``insert_row``, with a lost uniqueness race as a Conflict (``conflict_on``)."""
    with conflict_on(index_markers, detail, field):
        return insert_row(session, model, values)
