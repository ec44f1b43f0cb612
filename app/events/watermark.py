"""Purge watermarks: what the retention purge deleted, so no reader skips it unawares.

Each purge batch records, per cluster, the newest outbox id and transaction id it deleted
(``outbox_purges``; its id is the purge *epoch*). A reader's position (a feed cursor, a
webhook fan-out cursor) carries the epoch it was issued at. A purge after that epoch
deleted nothing the reader still had to read when every row it deleted is one the position
has passed (app/events/window.py :func:`~app.events.window.passed`, decided here from the
batch's maxima alone): then reading on skips nothing. Otherwise the position is expired:
the feed answers ``410 cursor_expired``, the webhook fan-out to that URL holds.

On PostgreSQL the maxima decide almost always; a snapshot that lists as in progress a
transaction as old as the newest purged txid is checked against the purged txids
themselves. Only a cursor carried from another cluster across a purge is decided on the
safe side: expired, though it may have read everything deleted. Never the reverse.

Purges before the epoch a position carries are not checked again: when it was issued, what
they deleted was gone already and the position had been checked against them (or started
after them, from the retained history). Epochs commit in order (app/events/retention.py
serialises purges), so the epoch read before a page covers every purge that page missed.

The marks themselves are pruned (:func:`prune_purges`, with each retention purge): marks
recorded more than twice ``events.retention_days`` ago go, but never the newest (its id is
the current epoch; SQLite would hand it out again). The oldest mark kept records the
newest epoch dropped (``pruned_through``), and a position whose epoch is older than that is
expired: the check it needed is gone, so it is decided on the safe side, never read on. Such
a cursor was issued before a purge that ran more than twice the retention ago: the events
it had not read were old enough to be purged for a whole retention period. A webhook
cursor, whose epoch moves only when its fan-out has new events, is checked and moved to the
current epoch first (as its fan-out would), so an idle URL is not held for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, delete, func, insert, literal, select, union_all, update
from sqlalchemy.orm import Session

from app.events.window import FeedPosition, Snapshot, cluster_here
from app.models.lifecycle import OutboxPurge, WebhookCursor, WebhookDelivery


@dataclass(frozen=True)
class Mark:
    """The newest row purged of one cluster (None on SQLite) after some epoch."""

    cluster: int | None
    max_id: int
    max_txid: int | None


def current_epoch(session: Session) -> int:
    """The newest purge's epoch; 0 before any purge."""
    return int(session.scalar(select(func.max(OutboxPurge.id))) or 0)


def record_purge(session: Session, rows: Iterable[tuple[int, int | None, int | None]],
                 now: datetime) -> None:
    """Record one batch's deleted rows, given as (id, txid, cluster_id): one mark per
    cluster."""
    by_cluster: dict[int | None, list[tuple[int, int | None]]] = {}
    for row_id, txid, cluster in rows:
        by_cluster.setdefault(cluster, []).append((row_id, txid))
    if not by_cluster:
        return
    rows_out = []
    for cluster, got in by_cluster.items():
        txids = sorted({t for _, t in got if t is not None})
        rows_out.append({"cluster_id": cluster, "max_id": max(i for i, _ in got),
                         "max_txid": txids[-1] if txids else None,
                         "txids": txids or None, "events": len(got), "purged_at": now})
    session.execute(insert(OutboxPurge), rows_out)


def fan_out_position(session: Session, cursor: WebhookCursor | None) -> FeedPosition:
    """Where a webhook endpoint's fan-out stands (no cursor: it has read nothing)."""
    if cursor is None:
        return FeedPosition()
    if session.get_bind().dialect.name != "postgresql":
        return FeedPosition(cursor.last_outbox_id)
    return FeedPosition() if cursor.position is None else \
        FeedPosition.from_values(cursor.position)


def held_endpoints(session: Session, urls: Sequence[str]) -> list[str]:
    """The URLs whose fan-out holds behind events purged before it read them."""
    cursors = list(session.scalars(select(WebhookCursor).where(WebhookCursor.endpoint.in_(urls))))
    held = purged_unread_each(session, [(fan_out_position(session, c), c.purge_epoch)
                                        for c in cursors])
    return [c.endpoint for c, flag in zip(cursors, held, strict=True) if flag]


def reset_cursor(session: Session, endpoint: str) -> bool:
    """Forget an endpoint's fan-out cursor: it then reads the retained outbox from the
    oldest event, as a new URL does (an event it has a delivery of gets no second one)."""
    return bool(session.execute(delete(WebhookCursor).where(
        WebhookCursor.endpoint == endpoint)).rowcount)


def delivered_to(session: Session, endpoint: str) -> bool:
    """Whether the outbox was ever fanned out to ``endpoint`` (a delivery of it is kept)."""
    return session.scalar(select(WebhookDelivery.id).where(
        WebhookDelivery.endpoint == endpoint).limit(1)) is not None


def purged_unread(session: Session, position: FeedPosition, since: int) -> bool:
    """Whether a purge after epoch ``since`` deleted rows ``position`` had not passed."""
    return purged_unread_each(session, [(position, since)])[0]


def purged_unread_each(session: Session,
                       checks: Sequence[tuple[FeedPosition, int]]) -> list[bool]:
    """:func:`purged_unread` of each (position, since), in a constant number of statements
    whatever their number (the webhook fan-out checks every URL each round): the marks
    after each distinct epoch in one UNION ALL, the cluster and the floor once."""
    if not checks:
        return []
    parts = [select(literal(epoch, BigInteger).label("since"), OutboxPurge.cluster_id,
                    func.max(OutboxPurge.max_id), func.max(OutboxPurge.max_txid))
             .where(OutboxPurge.id > epoch).group_by(OutboxPurge.cluster_id)
             for epoch in sorted({since for _, since in checks})]
    marks: dict[int, list[Mark]] = {}
    for since, *mark in session.execute(parts[0] if len(parts) == 1 else union_all(*parts)):
        marks.setdefault(since, []).append(Mark(*mark))
    if not marks:
        return [False] * len(checks)
    here = cluster_here(session)
    # The purged txids after an epoch, per cluster: read once, however many checks share
    # the epoch (each cursor asked anew: beside a transaction open since before the purged
    # events, 8 URLs cost 7 statements more than one).
    read: dict[tuple[int, int | None], set[int]] = {}

    def reader(since: int) -> Txids:
        def txids(cluster: int | None) -> set[int]:
            key = (since, cluster)
            if key not in read:
                read[key] = {t for batch in session.scalars(select(OutboxPurge.txids).where(
                    OutboxPurge.id > since, OutboxPurge.cluster_id == cluster))
                    for t in batch or ()}
            return read[key]
        return txids

    out = [bool(marks.get(since)) and
           not all(_read(position, mark, here, reader(since)) for mark in marks[since])
           for position, since in checks]
    # Read last: a prune committing meanwhile dropped only marks up to the floor read here.
    # Only a check with marks after its epoch needs it (the newest mark is never pruned).
    if any(since in marks and not expired for (_, since), expired in zip(checks, out,
                                                                          strict=True)):
        floor = pruned_floor(session)
        out = [expired or (since in marks and since < floor)
               for (_, since), expired in zip(checks, out, strict=True)]
    return out


def pruned_floor(session: Session) -> int:
    """The newest epoch whose mark :func:`prune_purges` dropped (0: none): a position from
    before it can no longer be checked."""
    return int(session.scalar(select(OutboxPurge.pruned_through)
                              .order_by(OutboxPurge.id).limit(1)) or 0)


def leading_before(rows: Sequence[Any], cutoff: datetime) -> list[int]:
    """The ids of ``rows`` (id, time), in their order, up to the first one not older than
    ``cutoff``: a purge deletes a prefix in id order, never past a row it must keep."""
    ids = []
    for row_id, at in rows:
        if at >= cutoff:
            break
        ids.append(row_id)
    return ids


def prune_purges(session: Session, cutoff: datetime, limit: int) -> int:
    """Drop up to ``limit`` of the oldest marks recorded before ``cutoff``, never the
    newest; returns how many. The caller holds the purge's lock (retention.py).

    Each webhook cursor still clean against every mark (its fan-out would send all it has
    not read) is moved to the current epoch first, as its fan-out does; one held stays
    held. When a fan-out has one of those cursors locked (PostgreSQL), nothing is pruned
    this run: that fan-out may be between reading the marks and the floor, and would find
    its cursor held by a floor it could not have been moved past."""
    newest = select(func.max(OutboxPurge.id)).scalar_subquery()
    rows = session.execute(select(OutboxPurge.id, OutboxPurge.purged_at)
                           .where(OutboxPurge.id < newest)
                           .order_by(OutboxPurge.id).limit(limit)).all()
    drop = leading_before(rows, cutoff)
    if not drop:
        return 0
    floor, epoch = drop[-1], current_epoch(session)
    behind = WebhookCursor.purge_epoch < floor
    pick = select(WebhookCursor).where(behind).execution_options(populate_existing=True)
    if session.get_bind().dialect.name == "postgresql":
        cursors = list(session.scalars(pick.with_for_update(skip_locked=True)))
        if {c.endpoint for c in cursors} != set(session.scalars(
                select(WebhookCursor.endpoint).where(behind))):
            return 0  # one is locked by a fan-out in flight: the next run
    else:
        cursors = list(session.scalars(pick))
    for cursor in cursors:
        if not purged_unread(session, fan_out_position(session, cursor), cursor.purge_epoch):
            cursor.purge_epoch = epoch
    session.flush()
    dropped = session.execute(delete(OutboxPurge).where(OutboxPurge.id <= floor)).rowcount
    session.execute(update(OutboxPurge).where(
        OutboxPurge.id == select(func.min(OutboxPurge.id)).scalar_subquery())
        .values(pruned_through=floor))
    return dropped or 0


Txids = Callable[[int | None], set[int]]


def _read(position: FeedPosition, mark: Mark, here: int | None, txids: Txids) -> bool:
    """Every row up to ``mark`` lies in what ``position`` passed (window.passed's cases)."""
    if here is None:  # SQLite: ids become visible in order
        return mark.max_id <= position.after_id
    if position.done is not None and _ended(position.done, mark, here, txids):
        return True
    if mark.max_id > position.after_id:
        return False
    # An id-only cursor passed every id up to after_id; within a window, those of them
    # whose transactions ended before its upper snapshot.
    return position.upto is None or _ended(position.upto, mark, here, txids)


def _ended(snapshot: Snapshot, mark: Mark, here: int, txids: Txids) -> bool:
    """Every purged row of ``mark``'s cluster had ended at ``snapshot`` (Snapshot.ended):
    its txids are all below xmax and none is one the snapshot lists as in progress (the
    purged txids are read only when one listed is that old, which takes a transaction
    open since before the purged events were written)."""
    taken_on = here if snapshot.cluster is None else snapshot.cluster
    written_on = here if mark.cluster is None else mark.cluster
    if written_on != taken_on:
        # Rows of another cluster were restored before a snapshot of this one was taken;
        # against a snapshot of another cluster, decide nothing (expire: the safe side).
        return taken_on == here
    newest = mark.max_txid or 0
    if newest < snapshot.xmin:
        return True
    if newest >= snapshot.xmax:
        return False
    old_in_progress = {x for x in snapshot.in_progress if x <= newest}
    return not old_in_progress or not old_in_progress & txids(mark.cluster)
