"""The purge of users past their retention, a batch per transaction (``roster worker``,
``roster lifecycle purge``).

All at once, the purge was one transaction naming every user due in one statement: past
65,535 of them PostgreSQL refuses the statement (its limit of bound parameters), so a first
purge of a large directory (``lifecycle.deprovisioned_retention_days`` set on a tenant
with years of Okta leavers, a directory of 100,000 users deleted) failed at every run and
purged nobody; below that, it held SQLite's write lock, and every SCIM write waited, for
as long as it took. Each batch records its users' ``user:purge`` with their deletion.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.audit import Actor
from app.db import Database, utcnow
from app.lifecycle.batches import purge_step

# Users purged per transaction by default (the commands pass events.purge_batch_size).
PURGE_BATCH = 1000


@dataclass(frozen=True)
class PurgeRun:
    """What one run purged, in how many transactions, and whether ``max_batches`` stopped
    it with users left."""

    purged: int
    batches: int
    more: bool


def purge_in_batches(db: Database, actor: Actor, *, retention_days: int,
                     deprovisioned_days: int = 0, batch_size: int = PURGE_BATCH,
                     max_batches: int | None = None, now: datetime | None = None) -> PurgeRun:
    """Purge the users past their retention (app/lifecycle/batches.py purge_step), in id
    order, ``batch_size`` a transaction, at most ``max_batches`` transactions."""
    now = now or utcnow()  # one cutoff for the whole run
    purged = batches = 0
    after = ""
    while max_batches is None or batches < max_batches:
        with db.transaction() as session:
            step = purge_step(session, actor, retention_days=retention_days,
                              deprovisioned_days=deprovisioned_days, now=now, after=after,
                              limit=batch_size)
        purged, batches = purged + step.purged, batches + 1
        if step.scanned_to is None:
            return PurgeRun(purged, batches, False)
        after = step.scanned_to
    return PurgeRun(purged, batches, True)
