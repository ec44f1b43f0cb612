"""The delivery worker loop (`roster worker`): fan out, claim, POST, record; repeat.

Several workers may run against PostgreSQL (claims use SKIP LOCKED and leases); on SQLite
run one. Each step is its own short transaction: no lock is held during an HTTP request.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

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
from app.events.signature import EVENT_ID_HEADER, IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign

log = logging.getLogger("roster.worker")

Poster = Callable[[Claimed, WebhookConfig], tuple[bool, int | None, str | None]]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer like any other: urllib turned a POST answered 301, 302 or 303
    into a GET without the event, sent it (signed) wherever the Location said (an internal
    address as well) and counted its 200 as delivered."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        """Follow nothing: the 3xx reaches the caller as an HTTPError."""
        return None


_OPENER = urllib.request.build_opener(_NoRedirects())


def post_event(item: Claimed, config: WebhookConfig) -> tuple[bool, int | None, str | None]:
    """POST one event; 2xx is success, anything else (a redirect too, which is not followed,
    or no answer) is a failure to retry."""
    body = json.dumps(item.event, sort_keys=True, separators=(",", ":")).encode()
    # Endpoints are checked to be http(s) when the settings are read (WebhookConfig).
    headers = {
        "Content-Type": "application/json", "User-Agent": "Roster-Webhooks/1",
        SIGNATURE_HEADER: sign(config.secret, int(time.time()), body),
        EVENT_ID_HEADER: item.event["id"], IDEMPOTENCY_HEADER: item.event["id"],
        "Roster-Event-Type": item.event["type"],
        "Roster-Delivery-Attempt": str(item.attempts + 1)}
    request = urllib.request.Request(item.endpoint, data=body, method="POST",  # noqa: S310
                                     headers=headers)
    try:
        with _OPENER.open(request, timeout=config.timeout_seconds) as response:
            return 200 <= response.status < 300, response.status, None
    except urllib.error.HTTPError as exc:
        return False, exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, None, str(getattr(exc, "reason", exc))[:500]


def run_once(db: Database, config: WebhookConfig, worker_id: str,
             poster: Poster = post_event) -> int:
    """One round: fan out new events, lease a batch, deliver it; returns deliveries tried."""
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
    results, skipped = _deliver_in_order(claimed, config, poster)
    if results or skipped:
        with db.transaction() as session:
            release(session, skipped)
            for item, ok, status, error in results:
                outcome = record_result(session, config, item.id, ok=ok, status=status,
                                        error=error, now=utcnow())
                if outcome != "delivered":
                    log.warning("delivery %s of %s to %s: %s (%s)", item.id, item.event["id"],
                                item.endpoint, outcome, error)
    return len(results)


def _deliver_in_order(claimed: list[Claimed], config: WebhookConfig, poster: Poster,
                      ) -> tuple[list[tuple[Claimed, bool, int | None, str | None]], list[int]]:
    """POST in id order; after a failure the rest of that aggregate waits (order per user)."""
    results: list[tuple[Claimed, bool, int | None, str | None]] = []
    failed: set[tuple[str, str]] = set()
    skipped: list[int] = []
    for item in claimed:
        key = (item.endpoint, item.aggregate_id) if item.aggregate_id else None
        if key in failed:
            skipped.append(item.id)
            continue
        ok, status, error = poster(item, config)
        results.append((item, ok, status, error))
        if not ok and key is not None:
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
            tried = run_once(db, config, worker_id, poster) if config.urls else 0
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
