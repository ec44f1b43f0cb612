"""The delivery worker loop (`roster worker`): fan out, claim, POST, record; repeat.

Several workers may run against PostgreSQL (claims use SKIP LOCKED and leases); on SQLite
run one. Each step is its own short transaction: no lock is held during an HTTP request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from app.db import Database, utcnow
from app.db_errors import describe_transient, is_transient
from app.events.delivery import (
    Claimed,
    WebhookConfig,
    claim,
    claim_due,
    fan_out,
    fan_out_due,
    record_result,
    release,
)
from app.events.posting import Posted, post_event

log = logging.getLogger("roster.worker")

Poster = Callable[[Claimed, WebhookConfig], Posted]


def run_once(db: Database, config: WebhookConfig, worker_id: str,
             poster: Poster = post_event, stop: threading.Event | None = None) -> int:
    """One round: fan out new events, lease a batch, deliver it; returns deliveries tried.
    Once ``stop`` is set (SIGTERM) no further POST starts: the rest of the batch is given
    back at once, for the next worker to send."""
    # Checked read-only first: on SQLite an idle round then takes no write lock at all, and a
    # busy one takes it once for fan-out and claim together (a waiting SQLite writer can be
    # starved by a steady stream of request transactions, so fewer acquisitions matter).
    now = utcnow()
    with db.transaction(readonly=True) as session:
        due = fan_out_due(session, config)
        if not due and not claim_due(session, config, now):
            return 0
    with db.transaction() as session:
        if due:
            fan_out(session, config, now)
            session.flush()
        claimed = claim(session, config, worker_id, utcnow())
    # No POST starts that could end after the lease: another worker may take the delivery
    # then (its lease_seconds from the claim), and the receiver would get it twice.
    stop_by = time.monotonic() + config.lease_seconds - config.timeout_seconds - 1
    results, skipped = _deliver_in_order(claimed, config, poster, stop_by, stop)
    if results or skipped:
        with db.transaction() as session:
            release(session, skipped, worker_id)
            for item, posted in results:
                outcome = record_result(session, config, item.id, worker_id=worker_id,
                                        ok=posted.ok, status=posted.status,
                                        error=posted.error, now=utcnow(),
                                        retry_after=posted.retry_after)
                if outcome != "delivered":
                    log.warning("delivery %s of %s to %s: %s (%s)", item.id, item.event["id"],
                                item.endpoint, outcome, posted.error)
    return len(results)


def _deliver_in_order(claimed: list[Claimed], config: WebhookConfig, poster: Poster,
                      stop_by: float = float("inf"), stop: threading.Event | None = None,
                      ) -> tuple[list[tuple[Claimed, Posted]], list[int]]:
    """POST in id order; after a failure the rest of that aggregate waits (order per user).
    Past ``stop_by`` (monotonic) no POST starts: the rest is released for the next round
    (the first is always sent, so a round makes progress). Once ``stop`` is set none starts:
    a worker told to stop went on posting the batch (50 POSTs, up to the lease's 24 s with
    a slow receiver), past a container's stop timeout, whose SIGKILL then left the batch
    leased and unsent until the lease ran out."""
    results: list[tuple[Claimed, Posted]] = []
    failed: set[tuple[str, str]] = set()
    skipped: list[int] = []
    for item in claimed:
        key = (item.endpoint, item.aggregate_id) if item.aggregate_id else None
        if key in failed or (results and time.monotonic() >= stop_by) or \
                (stop is not None and stop.is_set()):
            skipped.append(item.id)
            continue
        posted = Posted(*poster(item, config))
        results.append((item, posted))
        if not posted.ok and key is not None:
            failed.add(key)
    return results, skipped


def run(db: Database, config: WebhookConfig, worker_id: str, stop: threading.Event, *,
        until_idle: bool = False, periodic: Callable[[], None] | None = None,
        poster: Poster = post_event) -> None:
    """Loop until ``stop`` is set (or, with until_idle, until a round finds nothing to do).

    A transient database error (a lost connection, a PostgreSQL restart, SQLite busy past its
    timeout) costs the round, not the process: the next round starts after the poll
    interval. A delivery whose result could not be recorded is sent again once its lease
    runs out (at least once)."""
    while not stop.is_set():
        try:
            if periodic is not None:
                periodic()
            tried = run_once(db, config, worker_id, poster, stop) if config.urls else 0
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("worker round failed on a transient database error (%s); "
                        "trying again", describe_transient(exc))
            stop.wait(max(config.poll_interval_ms / 1000, 1.0))
            continue
        if tried:
            continue
        if until_idle:
            return
        stop.wait(config.poll_interval_ms / 1000)
