"""OIDC Back-Channel Logout (OIDC BCL 1.0): tell the portal which sessions ended.

Lifecycle (a domain package) cannot call us; it writes an outbox event ``session.revoked``
in the revoking transaction. :func:`collect` turns each such event into one delivery per
client that holds tokens of that session; :func:`claim` takes deliveries in a short
transaction, :func:`deliver` POSTs a signed logout token to the client's registered
back-channel URI with no transaction open, and :func:`record_results` writes the outcome
in another (run by `roster sso backchannel`, or by `roster worker` calling :func:`run_once`).
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from joserfc import jwt
from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.db import Database, new_id, utcnow
from app.http_deadline import cuttable_opener, within
from app.models import OutboxEvent
from app.models.sso import BackchannelLogout, IssuedToken
from app.sso.maintenance import ENDED_RETENTION
from app.sso.provider_config import ProviderConfig
from app.sso.provider_keys import ALG

EVENT = "http://schemas.openid.net/event/backchannel-logout"
MAX_ATTEMPTS = 5
# Deliveries one round takes. A claim lasts BATCH posts at the timeout plus a margin, so a
# live worker keeps its claim; past it, a worker that died mid-POST is presumed gone.
BATCH = 20
LEASE_MARGIN_SECONDS = 60
Poster = Callable[[str, bytes, float], int]


def logout_token(config: ProviderConfig, client_id: str, user_id: str,
                 session_id: str) -> str:
    """A signed Logout Token (OIDC BCL §2.4): sub, sid, events, no nonce."""
    now = int(time.time())
    claims = {"iss": config.issuer, "aud": client_id, "iat": now, "exp": now + 120,
              "jti": new_id(), "sub": user_id, "sid": session_id, "events": {EVENT: {}}}
    header = {"alg": ALG, "kid": config.keys.kid, "typ": "logout+jwt"}
    return jwt.encode(header, claims, config.keys.signing, algorithms=[ALG])


def _uncollected(now: datetime) -> ColumnElement[bool]:
    """A ``session.revoked`` event (outer-joined to its deliveries) not yet turned into
    deliveries, and recent enough to be (:func:`collect`)."""
    return and_(OutboxEvent.type == "session.revoked", BackchannelLogout.id.is_(None),
                OutboxEvent.created_at > now - ENDED_RETENTION)


def collect(session: Session, *, limit: int = 200) -> int:
    """Queue a delivery per (session.revoked event, client with tokens of that session).

    Another worker (node) may be queueing the same events: a row it has written already
    (committed or not) is left to it, waited for and not written again. Inserted plainly,
    the second worker's failed on the unique (event, client), which stopped it.

    Only events younger than the purge's ``ENDED_RETENTION``: the purge deletes a delivery
    (or marker) that old, and its event, still in the outbox (``events.retention_days`` 0
    or longer, an event held by a dead webhook), was queued again (the session gone, as a
    marker), purged a month later and queued again, for as long as the event stayed."""
    events = session.scalars(
        select(OutboxEvent)
        .outerjoin(BackchannelLogout, BackchannelLogout.outbox_event_id == OutboxEvent.event_id)
        .where(_uncollected(utcnow())).order_by(OutboxEvent.id).limit(limit)).all()
    queued = 0
    for event in events:
        login_id, user_id = event.payload.get("session_id"), event.payload.get("user_id")
        clients = sorted(set(session.scalars(select(IssuedToken.client_id).where(
            IssuedToken.session_id == login_id, IssuedToken.user_id.is_not(None)))))
        # A marker row keeps an event with no client from being looked at again.
        rows = [{"id": new_id(), "outbox_event_id": event.event_id,
                 "session_id": str(login_id or ""), "user_id": str(user_id or ""),
                 "client_id": client_id, "status": "pending" if client_id else "skipped",
                 "attempts": 0, "created_at": utcnow()} for client_id in clients or [""]]
        upsert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        written = session.scalars(
            upsert(BackchannelLogout).values(rows)
            .on_conflict_do_nothing(index_elements=["outbox_event_id", "client_id"])
            .returning(BackchannelLogout.client_id)).all()
        queued += sum(1 for client_id in written if client_id)
    return queued


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a delivery: urllib turned the POST answered 301, 302 or
    303 into a GET without the logout token, and counted the 200 at the end as sent."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        """Follow nothing: the 3xx reaches the caller as an HTTPError."""
        return None


def http_post(url: str, body: bytes, timeout: float) -> int:
    """POST a form body; the HTTP status (a redirect's own: it is not followed), or 0 when
    the endpoint cannot be reached or gives no answer within ``timeout`` seconds in all
    (app/http_deadline.py: urllib's timeout bounds each read, and a receiver sending its
    answer a byte at a time held the sender past its claim's lease, when another worker
    took the delivery and sent it again)."""
    request = urllib.request.Request(  # noqa: S310  URL comes from operator configuration
        url, data=body, method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    opener = cuttable_opener(_NoRedirects())
    with within(timeout) as cut:
        try:
            with opener.open(request, timeout=timeout) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            status = int(exc.code)
        # Unreachable, cut at the deadline, or no HTTP answer (a status line cut short or
        # garbled is an HTTPException, not an OSError: it ended the sender's round).
        except (OSError, http.client.HTTPException):
            return 0
    # Cut while the headers came (their end reads as an empty line): not a whole answer.
    return 0 if cut.is_set() else status


@dataclass(frozen=True)
class Claimed:
    """A delivery this worker took (status ``sending``), with what its token needs."""

    id: str
    client_id: str
    user_id: str
    session_id: str


def lease_seconds(timeout: float) -> float:
    """How long a claim holds: a whole batch of POSTs at the timeout, plus a margin."""
    return BATCH * timeout + LEASE_MARGIN_SECONDS


def _claimable(now: datetime, lease: float) -> ColumnElement[bool]:
    return or_(BackchannelLogout.status == "pending",
               and_(BackchannelLogout.status == "sending",
                    BackchannelLogout.sent_at < now - timedelta(seconds=lease)))


def claim(session: Session, config: ProviderConfig, now: datetime, *, lease: float,
          limit: int = BATCH) -> tuple[list[Claimed], int]:
    """Take pending deliveries (and ones a dead worker left ``sending`` past the lease).

    A claimed row says ``sending`` with ``sent_at`` = when it was taken, so another worker
    (SKIP LOCKED on PostgreSQL, the single write lock on SQLite) passes it by until the
    lease ends. Rows for a client without a back-channel URI fail here. Returns the claimed
    deliveries and how many failed.
    """
    rows = session.scalars(
        select(BackchannelLogout).where(_claimable(now, lease))
        .order_by(BackchannelLogout.created_at, BackchannelLogout.id).limit(limit)
        .with_for_update(skip_locked=True)).all()
    claimed: list[Claimed] = []
    failed = 0
    for row in rows:
        if row.client_id != config.client_id or not config.backchannel_logout_uri:
            row.status, row.sent_at = "failed", None
            row.last_error = "client has no back-channel logout URI"
            failed += 1
            continue
        row.status, row.sent_at = "sending", now
        claimed.append(Claimed(row.id, row.client_id, row.user_id, row.session_id))
    return claimed, failed


def deliver(config: ProviderConfig, claimed: list[Claimed], *, timeout: float,
            post: Poster = http_post, stop: threading.Event | None = None,
            ) -> list[tuple[str, int]]:
    """POST each logout token (outside any transaction); (delivery id, HTTP status) pairs,
    in ``claimed``'s order. Once ``stop`` is set no further POST starts."""
    results: list[tuple[str, int]] = []
    for item in claimed:
        if stop is not None and stop.is_set():
            break
        token = logout_token(config, item.client_id, item.user_id, item.session_id)
        body = urllib.parse.urlencode({"logout_token": token}).encode()
        results.append((item.id, post(config.backchannel_logout_uri, body, timeout)))
    return results


def record_results(session: Session, results: list[tuple[str, int]],
                   claimed_at: datetime) -> dict[str, int]:
    """200/204 is done; anything else goes back to pending, failed after MAX_ATTEMPTS."""
    counts = {"sent": 0, "failed": 0, "retry": 0}
    for delivery_id, status in results:
        row = session.get(BackchannelLogout, delivery_id, with_for_update=True)
        # Another worker took it over after our lease ended: its outcome counts, not ours.
        if row is None or row.status != "sending" or row.sent_at != claimed_at:
            continue
        row.attempts += 1
        if status in (200, 204):
            row.status, row.sent_at, row.last_error = "sent", utcnow(), None
            counts["sent"] += 1
            continue
        row.last_error = f"HTTP {status}" if status else "unreachable"
        row.status = "failed" if row.attempts >= MAX_ATTEMPTS else "pending"
        row.sent_at = None
        counts["failed" if row.status == "failed" else "retry"] += 1
    return counts


def release(session: Session, delivery_ids: list[str], claimed_at: datetime) -> None:
    """Give back claims this round did not send (its worker is stopping): pending again at
    once, not ``sending`` until the lease ends (a whole batch at the timeout, over 100 s)."""
    for delivery_id in delivery_ids:
        row = session.get(BackchannelLogout, delivery_id, with_for_update=True)
        if row is not None and row.status == "sending" and row.sent_at == claimed_at:
            row.status, row.sent_at = "pending", None


def _due(session: Session, now: datetime, lease: float) -> bool:
    """A read-only look: anything to collect or send? (An idle round takes no write lock.)"""
    new_event = select(OutboxEvent.id).outerjoin(
        BackchannelLogout, BackchannelLogout.outbox_event_id == OutboxEvent.event_id).where(
        _uncollected(now)).limit(1)
    sendable = select(BackchannelLogout.id).where(_claimable(now, lease)).limit(1)
    return session.scalar(new_event) is not None or session.scalar(sendable) is not None


def waiting(db: Database, *, timeout: float) -> int:
    """How many revoked sessions wait for their logouts to be queued, plus the deliveries
    waiting to be sent (read only): what a run without a provider key leaves undone."""
    now, lease = utcnow(), lease_seconds(timeout)
    with db.transaction(readonly=True) as session:
        events = session.scalar(select(func.count()).select_from(OutboxEvent).outerjoin(
            BackchannelLogout, BackchannelLogout.outbox_event_id == OutboxEvent.event_id)
            .where(_uncollected(now)))
        sendable = session.scalar(select(func.count()).select_from(BackchannelLogout)
                                  .where(_claimable(now, lease)))
    return int(events or 0) + int(sendable or 0)


def run_once(db: Database, config: ProviderConfig | None, *, timeout: float,
             post: Poster = http_post, stop: threading.Event | None = None,
             ) -> dict[str, Any]:
    """Collect and claim in one short transaction, POST with none open, record in another.

    SQLite has one writer: holding it while the portal answers (up to ``timeout`` per
    token) would stall every login and SCIM request. Same discipline as the events worker.
    Once ``stop`` is set (the worker got SIGTERM) no further POST starts and the claims not
    sent are given back in the same transaction as the results.
    """
    counts: dict[str, Any] = {"queued": 0, "sent": 0, "failed": 0, "retry": 0}
    now, lease = utcnow(), lease_seconds(timeout)
    with db.transaction(readonly=True) as session:
        if not _due(session, now, lease):
            return counts
    with db.transaction() as session:
        counts["queued"] = collect(session)
        if config is None:
            return counts
        session.flush()
        claimed, counts["failed"] = claim(session, config, now, lease=lease)
    if claimed:
        results = deliver(config, claimed, timeout=timeout, post=post, stop=stop)
        with db.transaction() as session:
            done = record_results(session, results, now)
            release(session, [item.id for item in claimed[len(results):]], now)
        counts.update(sent=done["sent"], retry=done["retry"],
                      failed=counts["failed"] + done["failed"])
    return counts
