"""The pull feed: outbox events after a position, so a portal can rebuild from any point.

No event may be skipped. On SQLite one transaction writes at a time, so outbox ids become
visible in id order and the position is the last id read. On PostgreSQL a sequence hands
ids out at INSERT and rows appear at COMMIT, in another order: paging by id skipped an
event whose transaction was still running while later ids were read (a concurrency audit
lost 1-11 % of events). There the position holds snapshots (``pg_current_snapshot()``, as
PgQ batches events): a window lists the events of the transactions that ended after the
snapshot ``done`` and before the snapshot ``upto``, in id order, so every committed event
falls in exactly one window. Each outbox row records its transaction id (migration 0014).
A transaction still running holds its window back; events are late, never lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, not_, or_, select, text
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.events.delivery import event_body
from app.models import OutboxEvent

# A snapshot's in-progress transactions, as a cursor carries them (bounded by the
# connections of the database server; more than this is no cursor the feed issued).
MAX_IN_PROGRESS = 2000


@dataclass(frozen=True)
class Snapshot:
    """A PostgreSQL snapshot (``xmin:xmax:xip``): which transactions had ended when it was
    taken (https://www.postgresql.org/docs/current/functions-info.html#FUNCTIONS-PG-SNAPSHOT-PARTS)."""

    xmin: int
    xmax: int
    in_progress: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text_form: str) -> Snapshot:
        """From ``pg_current_snapshot()::text``."""
        xmin, xmax, xip = text_form.split(":")
        return cls(int(xmin), int(xmax), tuple(int(x) for x in xip.split(",") if x))

    def ended(self) -> ColumnElement[bool]:
        """Rows whose transaction had ended when the snapshot was taken."""
        txid = OutboxEvent.txid
        before = txid < self.xmax
        if self.in_progress:
            before = and_(before, txid.not_in(self.in_progress))
        return or_(txid < self.xmin, before)

    def values(self) -> list[Any]:
        """For a cursor: the in-progress ids as offsets from xmin (short numbers)."""
        return [self.xmin, self.xmax - self.xmin, [x - self.xmin for x in self.in_progress]]

    @classmethod
    def from_values(cls, raw: Any) -> Snapshot | None:
        """Inverse of :meth:`values`; None for None; InvalidInput for anything else."""
        if raw is None:
            return None
        ok = (isinstance(raw, list) and len(raw) == 3 and _ints([raw[0], raw[1]])
              and isinstance(raw[2], list) and len(raw[2]) <= MAX_IN_PROGRESS
              and _ints(raw[2]))
        if not ok or raw[0] < 0 or raw[1] < 0 or any(x < 0 or x >= raw[1] for x in raw[2]):
            raise _bad_cursor()
        return cls(raw[0], raw[0] + raw[1], tuple(raw[0] + x for x in raw[2]))


@dataclass(frozen=True)
class FeedPosition:
    """Where a reader stands: after event ``after_id``; on PostgreSQL within the window of
    transactions that ended after ``done`` (None: from the start) and before ``upto``
    (None: a new window, up to now)."""

    after_id: int = 0
    done: Snapshot | None = None
    upto: Snapshot | None = None

    def values(self) -> list[Any]:
        """The cursor's content (app.api.pagination.encode_cursor makes it opaque)."""
        if self.done is None and self.upto is None:
            return [self.after_id]
        return [self.after_id, self.done and self.done.values(),
                self.upto and self.upto.values()]

    @classmethod
    def from_values(cls, raw: Any) -> FeedPosition:
        """Inverse of :meth:`values`: ``[id]`` (SQLite, and cursors issued before 0014) or
        ``[id, done, upto]``; anything else is InvalidInput."""
        if not isinstance(raw, list) or len(raw) not in (1, 3) or not _ints(raw[:1]) \
                or raw[0] < 0:
            raise _bad_cursor()
        if len(raw) == 1:
            return cls(raw[0])
        return cls(raw[0], Snapshot.from_values(raw[1]), Snapshot.from_values(raw[2]))


def events_after(session: Session, position: FeedPosition, *, limit: int = 100,
                 organization_id: str | None = None,
                 types: list[str] | None = None) -> tuple[list[dict[str, Any]], FeedPosition]:
    """A page of events after ``position``, oldest first, and the position after it."""
    stmt = select(OutboxEvent).where(OutboxEvent.id > position.after_id)
    if organization_id:
        stmt = stmt.where(OutboxEvent.organization_id == organization_id)
    if types:
        stmt = stmt.where(OutboxEvent.type.in_(types))
    if session.get_bind().dialect.name != "postgresql":
        rows = list(session.scalars(stmt.order_by(OutboxEvent.id).limit(limit)))
        return [event_body(e) for e in rows], FeedPosition(rows[-1].id if rows
                                                           else position.after_id)
    upto = position.upto or Snapshot.parse(
        session.scalar(text("SELECT pg_current_snapshot()::text")) or "")
    # The plain bound lets the index on txid find the window; ended() is an OR.
    window = [OutboxEvent.txid < upto.xmax, upto.ended()]
    if position.done is not None:
        # Below done.xmin every transaction had ended by then: the bound uses the index.
        window += [OutboxEvent.txid >= position.done.xmin, not_(position.done.ended())]
    rows = list(session.scalars(stmt.where(*window).order_by(OutboxEvent.id).limit(limit)))
    if len(rows) == limit:  # the window may hold more: stay in it
        return [event_body(e) for e in rows], FeedPosition(rows[-1].id, position.done, upto)
    return [event_body(e) for e in rows], FeedPosition(0, upto, None)


def _ints(values: list[Any]) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _bad_cursor() -> InvalidInput:
    return InvalidInput("cursor is not one this feed issued; start again without it",
                        field="after")
