"""OIDC login attempts toward customer IdPs: the state, nonce and PKCE verifier of each
authorization request, kept until its callback claims it once (OpenID Connect Core 1.0
§3.1.2.1, RFC 7636, RFC 6749 §10.12)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from app.db import utcnow
from app.models.sso import OidcLoginRequest, SsoConnection
from app.sso.oidc_rp import Provider
from app.sso.outcome import LoginFailed
from app.sso.sealed import Sealer


def state_key(state: str) -> str:
    """Attempts are stored under the SHA-256 of their state, never the state itself."""
    return hashlib.sha256(state.encode()).hexdigest()


@dataclass(frozen=True)
class LoginStart:
    """Where to send the browser, and the state to bind to it."""

    url: str
    state: str


def begin_login(session: Session, conn: SsoConnection, provider: Provider, redirect_uri: str,
                next_url: str | None, ttl_seconds: int, verifiers: Sealer, *,
                reauth: bool = False) -> LoginStart:
    """Remember a fresh state, nonce and PKCE verifier; build the authorization URL (§3.1.2.1).

    The state is kept as its SHA-256 and the verifier sealed with ``verifiers`` (RFC 7636
    §7.1: whoever reads it could redeem an intercepted code); the nonce travels through the
    browser anyway and is kept as it is.

    ``reauth``: ``prompt=login``, the IdP authenticates the user anew. (Not ``max_age=0``
    as well: it means the same, and an IdP comparing ``auth_time + 0`` with the time of the
    request after the login, as canaille does, sends the user round in circles.)"""
    now = utcnow()
    # Old attempts are useless once expired: sweep them here rather than in a job.
    session.execute(delete(OidcLoginRequest).where(OidcLoginRequest.expires_at < now))
    state, nonce, verifier = generate_token(43), generate_token(43), generate_token(64)
    session.add(OidcLoginRequest(id=state_key(state), connection_id=conn.id, nonce=nonce,
                                 code_verifier=verifiers.seal(verifier), redirect_to=next_url,
                                 created_at=now,
                                 expires_at=now + timedelta(seconds=ttl_seconds)))
    client = OAuth2Session(conn.oidc_client_id, scope=conn.oidc_scopes,
                           redirect_uri=redirect_uri, code_challenge_method="S256")
    fresh = {"prompt": "login"} if reauth else {}
    url, _ = client.create_authorization_url(provider.authorization_endpoint, state=state,
                                             nonce=nonce, code_verifier=verifier, **fresh)
    return LoginStart(url, state)


@dataclass(frozen=True)
class ClaimedAttempt:
    """What the callback needs from the stored attempt."""

    nonce: str
    code_verifier: str
    redirect_to: str | None


def claim_attempt(session: Session, conn: SsoConnection, state: str,
                  verifiers: Sealer) -> ClaimedAttempt:
    """Use the attempt named by ``state`` once: unknown, spent or expired states fail, and
    so does one whose sealed verifier neither ``app.secret_key`` nor the previous key opens."""
    if not state:
        raise LoginFailed("bad_state", "the callback carries no state")
    key = state_key(state)
    row = session.get(OidcLoginRequest, key)
    if row is None or row.connection_id != conn.id:
        raise LoginFailed("bad_state", "the state was not issued by this server")
    if row.used_at is not None:
        raise LoginFailed("state_replayed", "the state was already used")
    if row.expires_at < utcnow():
        raise LoginFailed("state_expired", "the login attempt expired")
    # Read before the update: it synchronises the loaded row (the verifier becomes None).
    sealed = row.code_verifier
    attempt = ClaimedAttempt(row.nonce, verifiers.open(sealed) or "", row.redirect_to)
    # Conditional update: two concurrent callbacks cannot both claim the attempt.
    claimed = session.execute(
        update(OidcLoginRequest)
        .where(OidcLoginRequest.id == key, OidcLoginRequest.used_at.is_(None))
        .values(used_at=utcnow(), code_verifier=None)).rowcount
    if claimed != 1:
        raise LoginFailed("state_replayed", "the state was already used")
    if not attempt.code_verifier:
        raise LoginFailed("missing_pkce_verifier", "the PKCE verifier stored for this attempt "
                          "cannot be decrypted with app.secret_key (nor app.previous_secret_key)"
                          if sealed else "no PKCE verifier is stored for this attempt")
    return attempt
