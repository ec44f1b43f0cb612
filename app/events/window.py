"""Windows over the outbox by transaction id: what the pull feed and the webhook fan-out read.

No event may be skipped or listed twice. On SQLite one transaction writes at a time, so
outbox ids become visible in id order and the position is the last id read. On PostgreSQL a
sequence hands ids out at INSERT and rows appear at COMMIT, in another order (and ``nextval``
may even run before the transaction has an xid), so the position holds snapshots
(``pg_current_snapshot()``, as PgQ batches events): a window lists the events of the
transactions that ended after the snapshot ``done`` and before the snapshot ``upto``, in id
order, so every committed event falls in exactly one window. Each outbox row records its
transaction id (migration 0014). A transaction still running holds its own events back, not
anyone else's: the next window reads the transactions ``done`` listed as in progress by
their ids and the rest from ``done``'s xmax on, so an idle-in-transaction session costs a
few index probes per window, not a rescan of everything written since it began.

Transaction ids mean something only within one cluster's history: a ``pg_dump`` restored on
another cluster keeps the old txids in its rows, and the new cluster counts from its own.
So each row also records its cluster (``system_identifier``, migration 0020) and each
snapshot the cluster it was taken on. Rows of another cluster than the current one were
restored here: they ended before any snapshot of this cluster. A snapshot of another cluster
decides its own cluster's rows by txid, and of the rest counts as seen only the rows below
that cluster's first id (restored into it before it wrote; a later cluster's ids follow its
restored sequence): a cursor carried across a move resumes where it stood, with no event
skipped and none repeated (when that cluster wrote no event, every row of another cluster
comes again: consumers deduplicate by event id).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, not_, or_, select, text
from sqlalchemy.orm import Session

from app.errors import InvalidInput
from app.models import OutboxEvent

# A snapshot's in-progress transactions, as a cursor carries them (bounded by the
# connections of the database server; more than this is no cursor the feed issued).
MAX_IN_PROGRESS = 2000
_BIGINT = 2**63
# https://www.postgresql.org/docs/current/functions-info.html#FUNCTIONS-PG-SNAPSHOT and
# #FUNCTIONS-CONTROLDATA (readable without superuser: EXECUTE is granted to PUBLIC).
_NOW = text("SELECT pg_current_snapshot()::text, system_identifier FROM pg_control_system()")
_CLUSTER = text("SELECT system_identifier FROM pg_control_system()")


@dataclass(frozen=True)
class Snapshot:
    """A PostgreSQL snapshot (``xmin:xmax:xip``): which transactions had ended when it was
    taken (https://www.postgresql.org/docs/current/functions-info.html#FUNCTIONS-PG-SNAPSHOT-PARTS),
    on the cluster ``cluster`` (None: a cursor from before migration 0020, this cluster)."""

    xmin: int
    xmax: int
    in_progress: tuple[int, ...] = ()
    cluster: int | None = None

    @classmethod
    def parse(cls, text_form: str, cluster: int | None = None) -> Snapshot:
        """From ``pg_current_snapshot()::text``."""
        xmin, xmax, xip = text_form.split(":")
        return cls(int(xmin), int(xmax), tuple(int(x) for x in xip.split(",") if x), cluster)

    def local(self, here: int) -> bool:
        """Taken on the cluster ``here``."""
        return self.cluster is None or self.cluster == here

    def txids_ended(self) -> ColumnElement[bool]:
        """Rows whose txid had ended by then (meaningful for this snapshot's cluster only)."""
        txid = OutboxEvent.txid
        before = txid < self.xmax
        if self.in_progress:
            before = and_(before, txid.not_in(self.in_progress))
        return or_(txid < self.xmin, before)

    def txids_not_ended(self) -> ColumnElement[bool]:
        """The complement of :meth:`txids_ended`, as index probes: the in-progress ids, and
        the range from xmax (every in-progress id lies in [xmin, xmax))."""
        later = OutboxEvent.txid >= self.xmax
        return or_(later, OutboxEvent.txid.in_(self.in_progress)) if self.in_progress else later

    def ended(self, here: int) -> ColumnElement[bool]:
        """Rows whose transaction had ended when the snapshot was taken, on cluster ``here``."""
        cluster = OutboxEvent.cluster_id
        if self.local(here):  # rows of another cluster were restored here: ended before
            return or_(cluster.is_distinct_from(here), and_(cluster == here, self.txids_ended()))
        first = select(func.min(OutboxEvent.id)).where(cluster == self.cluster).scalar_subquery()
        return or_(and_(cluster == self.cluster, self.txids_ended()),
                   and_(cluster.is_distinct_from(self.cluster),
                        OutboxEvent.id < func.coalesce(first, 0)))

    def values(self) -> list[Any]:
        """For a cursor: the in-progress ids as offsets from xmin (short numbers)."""
        out: list[Any] = [self.xmin, self.xmax - self.xmin,
                          [x - self.xmin for x in self.in_progress]]
        return out if self.cluster is None else [*out, self.cluster]

    @classmethod
    def from_values(cls, raw: Any) -> Snapshot | None:
        """Inverse of :meth:`values`; None for None; InvalidInput for anything else."""
        if raw is None:
            return None
        ok = (isinstance(raw, list) and len(raw) in (3, 4) and _ints([raw[0], raw[1], *raw[3:]])
              and isinstance(raw[2], list) and len(raw[2]) <= MAX_IN_PROGRESS
              and _ints(raw[2]))
        if not ok or raw[0] < 0 or raw[1] < 0 or raw[0] + raw[1] >= _BIGINT \
                or any(x < 0 or x >= raw[1] for x in raw[2]) \
                or not -_BIGINT <= (raw[3] if len(raw) == 4 else 0) < _BIGINT:
            raise bad_cursor()
        return cls(raw[0], raw[0] + raw[1], tuple(raw[0] + x for x in raw[2]),
                   raw[3] if len(raw) == 4 else None)


@dataclass(frozen=True)
class FeedPosition:
    """Where a reader stands: after event ``after_id``; on PostgreSQL within the window of
    transactions that ended after ``done`` (None: from the start) and before ``upto``
    (None: a new window, up to now)."""

    after_id: int = 0
    done: Snapshot | None = None
    upto: Snapshot | None = None
    # The newest outbox purge (app/events/retention.py) when the position was issued: a
    # later purge of events it had not passed expires it. 0: before any purge, or a cursor
    # issued before migration 0021 (checked against every purge).
    epoch: int = 0

    def values(self) -> list[Any]:
        """The cursor's content (app.api.pagination.encode_cursor makes it opaque)."""
        tail = [self.epoch] if self.epoch else []
        if self.done is None and self.upto is None:
            return [self.after_id, *tail]
        return [self.after_id, self.done and self.done.values(),
                self.upto and self.upto.values(), *tail]

    @classmethod
    def from_values(cls, raw: Any) -> FeedPosition:
        """Inverse of :meth:`values`: ``[id]`` (SQLite, and cursors issued before 0014) or
        ``[id, done, upto]``, each optionally followed by the purge epoch (0021); anything
        else is InvalidInput."""
        if not isinstance(raw, list) or len(raw) not in (1, 2, 3, 4) or not _ints(raw[:1]) \
                or not 0 <= raw[0] < _BIGINT:
            raise bad_cursor()
        epoch = 0
        if len(raw) in (2, 4):
            epoch = raw[-1]
            if not _ints([epoch]) or not 0 < epoch < _BIGINT:
                raise bad_cursor()
        if len(raw) <= 2:
            return cls(raw[0], epoch=epoch)
        return cls(raw[0], Snapshot.from_values(raw[1]), Snapshot.from_values(raw[2]), epoch)


@dataclass(frozen=True)
class Window:
    """The outbox rows of the next window after ``position``: filter with ``where``, read in
    id order, and ask :meth:`after` for the position that follows what was read."""

    where: list[ColumnElement[bool]]
    position: FeedPosition
    upto: Snapshot | None  # None on SQLite

    def after(self, last_id: int | None, full: bool) -> FeedPosition:
        """The position after reading up to ``last_id``; ``full``: the read hit its limit, so
        the window may hold more (stay in it)."""
        if self.upto is None:
            return FeedPosition(self.position.after_id if last_id is None else last_id)
        if full and last_id is not None:
            return FeedPosition(last_id, self.position.done, self.upto)
        return FeedPosition(0, self.upto, None)


def open_window(session: Session, position: FeedPosition) -> Window:
    """The next window after ``position`` (PostgreSQL: up to a snapshot taken now)."""
    where: list[ColumnElement[bool]] = [OutboxEvent.id > position.after_id]
    if session.get_bind().dialect.name != "postgresql":
        return Window(where, position, None)
    if position.upto is None:
        snapshot, here = session.execute(_NOW).one()
        upto = Snapshot.parse(snapshot, here)
    else:
        here, upto = session.scalar(_CLUSTER), position.upto
    done = position.done
    if upto.local(here) and (done is None or done.local(here)):
        # The usual case. Plain bounds on txid let its index find the window (ended() is an
        # OR); below done's xmax only done's in-progress ids can be new.
        mine = [OutboxEvent.cluster_id == here, OutboxEvent.txid < upto.xmax,
                upto.txids_ended()]
        if done is None:
            where.append(or_(OutboxEvent.cluster_id.is_distinct_from(here), and_(*mine)))
        else:
            where += [*mine, done.txids_not_ended()]
    else:  # a cursor carried across a dump and restore: read once, then local again
        where.append(upto.ended(here))
        if done is not None:
            where.append(not_(done.ended(here)))
    return Window(where, position, upto)


def cluster_here(session: Session) -> int | None:
    """This PostgreSQL cluster's system_identifier; None on SQLite."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    return int(session.scalar(_CLUSTER))


def passed(position: FeedPosition, here: int | None) -> ColumnElement[bool]:
    """The outbox rows a reader at ``position`` has read already: the complement of what
    its next windows list (:func:`open_window`); ``here`` from :func:`cluster_here`."""
    read: ColumnElement[bool] = OutboxEvent.id <= position.after_id
    if here is None:
        return read
    if position.upto is not None:
        read = and_(read, position.upto.ended(here))
    return read if position.done is None else or_(position.done.ended(here), read)


def anything_after(session: Session, positions: Sequence[FeedPosition]) -> bool:
    """A read-only check: is a committed event past any of ``positions`` (the next window
    of one of them not empty)? One statement whatever their number (and on PostgreSQL the
    cluster's id once): an EXISTS per distinct position, OR'ed."""
    if not positions:
        return False
    if session.get_bind().dialect.name != "postgresql":  # ids visible in order: the least
        first = min(p.after_id for p in positions)
        return bool(session.scalar(select(exists().where(OutboxEvent.id > first))))
    if any(p.upto is not None for p in positions):
        return True  # in the middle of a window: it was full
    here = session.scalar(_CLUSTER) if any(p.done is not None for p in positions) else None
    conds: list[ColumnElement[bool]] = []
    for position in dict.fromkeys(positions):
        done = position.done
        if done is None:
            conds.append(OutboxEvent.id > position.after_id)
        else:
            conds.append(and_(OutboxEvent.cluster_id == here, done.txids_not_ended())
                         if done.local(here) else not_(done.ended(here)))
    return bool(session.scalar(select(or_(*[exists().where(c) for c in conds]))))


def _ints(values: list[Any]) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def bad_cursor() -> InvalidInput:
    """The error for a cursor this service did not issue."""
    return InvalidInput("cursor is not one this feed issued; start again without it",
                        field="after")
