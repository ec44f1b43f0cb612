"""Retention of SSO bookkeeping: rows that only matter until they expire are deleted.

Failed-login traces live ``sso.trace_retention_days`` after they were written (the setting
as it is at the purge, for traces already stored too); AuthnRequests, OIDC login attempts,
replay-cache entries and authorization codes live minutes. Without a purge every one of
them grows with each login, so `roster worker` runs :func:`purge_in_batches` periodically
(and `roster sso purge-traces` on demand).

Each statement deletes at most a batch, each batch is its own transaction: a first purge
of a backlog (a deployment that ran without `roster worker`, whose tokens, sessions and
traces piled up for months) was one transaction deleting them all, holding SQLite's write
lock (every SCIM write and login waiting behind it) for as long as that took. A worker
round runs at most ``max_batches`` of them and goes on at its next round.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select, tuple_, update
from sqlalchemy.orm import Session

from app.db import Database, utcnow
from app.models.sso import (
    AuthorizationCode,
    BackchannelLogout,
    IssuedToken,
    LoginSession,
    LoginTrace,
    OidcLoginRequest,
    SamlRequest,
    SeenAssertion,
)
from app.sso.traces import kept_since

log = logging.getLogger("roster.sso")

# How often the worker purges: rows are small, so a few minutes' delay costs nothing.
PURGE_INTERVAL_SECONDS = 600.0
# How long ended login sessions and sent back-channel logouts stay (support questions), and
# how long a token stays after it expired.
ENDED_RETENTION = timedelta(days=30)
TOKEN_GRACE = timedelta(days=1)
# Rows one statement deletes at most, and the batches one worker round runs at most.
DEFAULT_BATCH = 1000
ROUND_BATCHES = 20


def _delete(session: Session, keys: Any, condition: ColumnElement[bool],
            limit: int | None) -> int:
    """Delete the rows matching ``condition``, at most ``limit`` of them (by primary key
    ``keys``: one column, or a tuple of them)."""
    table = keys[0].table if isinstance(keys, tuple) else keys.table
    if limit is None:
        return session.execute(delete(table).where(condition)).rowcount or 0
    key = tuple_(*keys) if isinstance(keys, tuple) else keys
    pick = select(*keys) if isinstance(keys, tuple) else select(keys)
    return session.execute(delete(table).where(
        key.in_(pick.where(condition).limit(limit)))).rowcount or 0


def purge_expired_rows(session: Session, limit: int | None = None, *,
                       trace_retention_days: int) -> dict[str, int]:
    """Delete traces past ``trace_retention_days``, expired SAML requests and replay-cache
    rows, OIDC attempts and codes, and the tokens, login sessions and back-channel logouts
    that ended long enough ago; each kind at most ``limit`` rows (None: all)."""
    return _purge(session, utcnow(), limit, trace_retention_days)[0]


def _purge(session: Session, now: datetime, limit: int | None,
           trace_retention_days: int) -> tuple[dict[str, int], bool]:
    """The counts, and whether some statement met its ``limit`` (more may be left)."""
    saml = (_delete(session, SamlRequest.id, SamlRequest.expires_at <= now, limit),
            _delete(session, (SeenAssertion.connection_id, SeenAssertion.assertion_id),
                    SeenAssertion.expires_at <= now, limit))
    counts = {
        "traces": _delete(session, LoginTrace.id,
                          LoginTrace.created_at <= kept_since(trace_retention_days, now),
                          limit),
        "saml": sum(saml),
        "oidc_attempts": _delete(session, OidcLoginRequest.id,
                                 OidcLoginRequest.expires_at <= now, limit),
        "authorization_codes": _delete(session, AuthorizationCode.code_hash,
                                       AuthorizationCode.expires_at <= now, limit),
    }
    cleared, ended = _purge_ended(session, now, limit)
    counts.update(ended)
    full = limit is not None and (cleared >= limit or any(n >= limit for n in saml) or any(
        n >= limit for key, n in counts.items() if key != "saml"))
    return counts, full


def _purge_ended(session: Session, now: datetime,
                 limit: int | None) -> tuple[int, dict[str, int]]:
    """Every Entra token request, portal login and refresh added a row for good. A token
    goes a day after it expired (a rotated refresh token stays until then, so its replay is
    still caught while it could be used); a login session, with any token left of it,
    ENDED_RETENTION after it ended, and a back-channel logout (sent, failed or never sent)
    ENDED_RETENTION after it was queued. An expired login's sealed IdP
    ID token is cleared at once (the first count)."""
    ended = now - ENDED_RETENTION
    # The sealed IdP ID token was kept for the logout of a live login only: an expired
    # login's goes now, not with its row a month later (a revoked one's went at once).
    expired = (LoginSession.expires_at <= now) & LoginSession.upstream_id_token.is_not(None)
    pick = select(LoginSession.id).where(expired)
    cleared = session.execute(update(LoginSession).where(
        expired if limit is None else LoginSession.id.in_(pick.limit(limit)))
        .values(upstream_id_token=None)
        .execution_options(synchronize_session=False)).rowcount or 0
    tokens = _delete(session, IssuedToken.id, IssuedToken.expires_at <= now - TOKEN_GRACE,
                     limit)
    logins = _delete(session, LoginSession.id, or_(
        LoginSession.revoked_at <= ended, LoginSession.expires_at <= ended), limit)
    # Every status: a pending one that old will not be sent (its login ended a month ago);
    # one left pending when [oidc_provider] was removed (nothing sends it then) stayed for
    # good. app/sso/backchannel.py collects no event older than this, so a purged one is
    # not queued again.
    logouts = _delete(session, BackchannelLogout.id,
                      BackchannelLogout.created_at <= ended, limit)
    return cleared, {"issued_tokens": tokens, "login_sessions": logins,
                     "backchannel_logouts": logouts}


def purge_in_batches(db: Database, batch_size: int = DEFAULT_BATCH, *,
                     trace_retention_days: int,
                     max_batches: int | None = None) -> tuple[dict[str, int], bool]:
    """:func:`purge_expired_rows` a batch per transaction until nothing is left, at most
    ``max_batches`` transactions; the counts, and whether work was left."""
    now = utcnow()  # one cutoff for the run
    total: Counter[str] = Counter()
    batches = 0
    while max_batches is None or batches < max_batches:
        with db.transaction() as session:
            counts, full = _purge(session, now, batch_size, trace_retention_days)
        total.update(counts)
        batches += 1
        if not full:
            return {key: total[key] for key in counts}, False
    return {key: total[key] for key in counts}, True


class PeriodicPurge:
    """Call :meth:`maybe_run` from a loop: it purges at most once per ``interval`` seconds
    (sooner while a backlog is left), at most ``ROUND_BATCHES`` batches a time."""

    def __init__(self, db: Database, interval: float = PURGE_INTERVAL_SECONDS,
                 batch_size: int = DEFAULT_BATCH, *, trace_retention_days: int) -> None:
        self._db, self._interval, self._last = db, interval, float("-inf")
        self._batch_size, self._trace_days = batch_size, trace_retention_days

    def rearm(self) -> None:
        """Make the next :meth:`maybe_run` purge, whenever the last one ran."""
        self._last = float("-inf")

    def maybe_run(self) -> dict[str, int] | None:
        """Purge if the interval has passed since the last run; the counts, or None."""
        if time.monotonic() - self._last < self._interval:
            return None
        self._last = time.monotonic()
        counts, more = purge_in_batches(self._db, self._batch_size,
                                        trace_retention_days=self._trace_days,
                                        max_batches=ROUND_BATCHES)
        if more:
            self.rearm()
        if any(counts.values()):
            log.info("purged expired sso rows", extra=counts)
        return counts
