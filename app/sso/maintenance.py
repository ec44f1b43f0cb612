"""Retention of SSO bookkeeping: rows that only matter until they expire are deleted.

Failed-login traces live ``sso.trace_retention_days``; AuthnRequests, OIDC login attempts,
replay-cache entries and authorization codes live minutes. Without a purge every one of
them grows with each login, so `roster worker` runs :func:`purge_expired_rows` periodically
(and `roster sso purge-traces` on demand).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.orm import Session

from app.db import Database, utcnow
from app.models.sso import (
    AuthorizationCode,
    BackchannelLogout,
    IssuedToken,
    LoginSession,
    OidcLoginRequest,
)
from app.sso.saml import purge_expired
from app.sso.traces import purge_traces

log = logging.getLogger("roster.sso")

# How often the worker purges: rows are small, so a few minutes' delay costs nothing.
PURGE_INTERVAL_SECONDS = 600.0
# How long ended login sessions and sent back-channel logouts stay (support questions), and
# how long a token stays after it expired.
ENDED_RETENTION = timedelta(days=30)
TOKEN_GRACE = timedelta(days=1)


def purge_expired_rows(session: Session) -> dict[str, int]:
    """Delete expired traces, SAML requests and replay-cache rows, OIDC attempts and codes,
    and the tokens, login sessions and back-channel logouts that ended long enough ago."""
    now = utcnow()
    attempts = session.execute(
        delete(OidcLoginRequest).where(OidcLoginRequest.expires_at <= now)).rowcount
    codes = session.execute(
        delete(AuthorizationCode).where(AuthorizationCode.expires_at <= now)).rowcount
    return {"traces": purge_traces(session) or 0, "saml": purge_expired(session) or 0,
            "oidc_attempts": attempts or 0, "authorization_codes": codes or 0,
            **_purge_ended(session, now)}


def _purge_ended(session: Session, now: datetime) -> dict[str, int]:
    """Every Entra token request, portal login and refresh added a row for good. A token
    goes a day after it expired (a rotated refresh token stays until then, so its replay is
    still caught while it could be used); a login session, with any token left of it, and
    a back-channel logout ENDED_RETENTION after they ended. An expired login's sealed IdP
    ID token is cleared at once."""
    ended = now - ENDED_RETENTION
    # The sealed IdP ID token was kept for the logout of a live login only: an expired
    # login's goes now, not with its row a month later (a revoked one's went at once).
    session.execute(update(LoginSession).where(
        LoginSession.expires_at <= now, LoginSession.upstream_id_token.is_not(None))
        .values(upstream_id_token=None).execution_options(synchronize_session=False))
    tokens = session.execute(delete(IssuedToken).where(
        IssuedToken.expires_at <= now - TOKEN_GRACE)).rowcount
    logins = session.execute(delete(LoginSession).where(or_(
        LoginSession.revoked_at <= ended, LoginSession.expires_at <= ended)).execution_options(
        synchronize_session=False)).rowcount
    logouts = session.execute(delete(BackchannelLogout).where(
        BackchannelLogout.status != "pending", BackchannelLogout.created_at <= ended)).rowcount
    return {"issued_tokens": tokens or 0, "login_sessions": logins or 0,
            "backchannel_logouts": logouts or 0}


class PeriodicPurge:
    """Call :meth:`maybe_run` from a loop: it purges at most once per ``interval`` seconds."""

    def __init__(self, db: Database, interval: float = PURGE_INTERVAL_SECONDS) -> None:
        self._db, self._interval, self._last = db, interval, float("-inf")

    def rearm(self) -> None:
        """Make the next :meth:`maybe_run` purge, whenever the last one ran."""
        self._last = float("-inf")

    def maybe_run(self) -> dict[str, int] | None:
        """Purge if the interval has passed since the last run; the counts, or None."""
        if time.monotonic() - self._last < self._interval:
            return None
        self._last = time.monotonic()
        with self._db.transaction() as session:
            counts = purge_expired_rows(session)
        if any(counts.values()):
            log.info("purged expired sso rows", extra=counts)
        return counts
