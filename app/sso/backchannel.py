"""OIDC Back-Channel Logout (OIDC BCL 1.0): tell the portal which sessions ended.

Lifecycle (a domain package) cannot call us; it writes an outbox event ``session.revoked``
in the revoking transaction. :func:`collect` turns each such event into one delivery per
client that holds tokens of that session, and :func:`send_pending` POSTs a signed logout
token to the client's registered back-channel URI (run by `roster sso backchannel`, or by
the events worker calling :func:`run_once`).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from joserfc import jwt
from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from app.db import Database, new_id, utcnow
from app.models import OutboxEvent
from app.models.sso import BackchannelLogout, IssuedToken
from app.sso.provider import ProviderConfig
from app.sso.provider_keys import ALG

EVENT = "http://schemas.openid.net/event/backchannel-logout"
MAX_ATTEMPTS = 5
Poster = Callable[[str, bytes, float], int]


def logout_token(config: ProviderConfig, client_id: str, user_id: str,
                 session_id: str) -> str:
    """A signed Logout Token (OIDC BCL §2.4): sub, sid, events, no nonce."""
    now = int(time.time())
    claims = {"iss": config.issuer, "aud": client_id, "iat": now, "exp": now + 120,
              "jti": new_id(), "sub": user_id, "sid": session_id, "events": {EVENT: {}}}
    header = {"alg": ALG, "kid": config.keys.kid, "typ": "logout+jwt"}
    return jwt.encode(header, claims, config.keys.signing, algorithms=[ALG])


def collect(session: Session, *, limit: int = 200) -> int:
    """Queue a delivery per (session.revoked event, client with tokens of that session)."""
    events = session.scalars(
        select(OutboxEvent)
        .outerjoin(BackchannelLogout, BackchannelLogout.outbox_event_id == OutboxEvent.event_id)
        .where(OutboxEvent.type == "session.revoked", BackchannelLogout.id.is_(None))
        .order_by(OutboxEvent.id).limit(limit)).all()
    queued = 0
    for event in events:
        login_id, user_id = event.payload.get("session_id"), event.payload.get("user_id")
        clients = sorted(set(session.scalars(select(IssuedToken.client_id).where(
            IssuedToken.session_id == login_id, IssuedToken.user_id.is_not(None)))))
        # A marker row keeps an event with no client from being looked at again.
        for client_id in clients or [""]:
            session.add(BackchannelLogout(
                outbox_event_id=event.event_id, session_id=str(login_id or ""),
                user_id=str(user_id or ""), client_id=client_id,
                status="pending" if client_id else "skipped"))
            queued += bool(client_id)
    return queued


def http_post(url: str, body: bytes, timeout: float) -> int:
    """POST a form body; the HTTP status, or 0 when the endpoint cannot be reached."""
    request = urllib.request.Request(  # noqa: S310  URL comes from operator configuration
        url, data=body, method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def send_pending(session: Session, config: ProviderConfig, *, timeout: float,
                 post: Poster = http_post, limit: int = 100) -> dict[str, int]:
    """Send pending logout tokens; 200/204 is done, anything else retries then fails."""
    counts = {"sent": 0, "failed": 0, "retry": 0}
    rows = session.scalars(select(BackchannelLogout).where(and_(
        BackchannelLogout.status == "pending")).order_by(BackchannelLogout.created_at)
        .limit(limit).with_for_update(skip_locked=True)).all()
    for row in rows:
        if row.client_id != config.client_id or not config.backchannel_logout_uri:
            row.status, row.last_error = "failed", "client has no back-channel logout URI"
            counts["failed"] += 1
            continue
        token = logout_token(config, row.client_id, row.user_id, row.session_id)
        body = urllib.parse.urlencode({"logout_token": token}).encode()
        status = post(config.backchannel_logout_uri, body, timeout)
        row.attempts += 1
        if status in (200, 204):
            row.status, row.sent_at, row.last_error = "sent", utcnow(), None
            counts["sent"] += 1
        else:
            row.last_error = f"HTTP {status}" if status else "unreachable"
            row.status = "failed" if row.attempts >= MAX_ATTEMPTS else "pending"
            counts["failed" if row.status == "failed" else "retry"] += 1
    return counts


def run_once(db: Database, config: ProviderConfig | None, *, timeout: float,
             post: Poster = http_post) -> dict[str, Any]:
    """Collect new revocations and send what is pending, each in its own transaction."""
    with db.transaction() as session:
        queued = collect(session)
    if config is None:
        return {"queued": queued, "sent": 0, "failed": 0, "retry": 0}
    with db.transaction() as session:
        return {"queued": queued, **send_pending(session, config, timeout=timeout, post=post)}
