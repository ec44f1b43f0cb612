"""The OpenID Provider's tokens: issue, look up, rotate, and revoke a whole grant.

Tokens are stored as SHA-256 only. Every token carries ``family_id``, the hash of the
authorization code it descends from, kept across refreshes: a reused code (RFC 6749 §4.1.2)
or a replayed rotated refresh token (RFC 9700 §4.14.2) revokes the family, audited as
``sso:token:replay``.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from authlib.oauth2.rfc6749.models import ClientMixin, TokenMixin
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import utcnow
from app.models import User
from app.models.directory import UserStatus
from app.models.sso import AuthorizationCode, IssuedToken, LoginSession
from app.sso.provider_config import ProviderConfig

ACCESS, REFRESH = "access", "refresh"
REPLAY_ACTION = "sso:token:replay"


def digest(value: str) -> str:
    """SHA-256 hex of a code or token: what the database keeps."""
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """The signed-in user and the login session the tokens hang off."""

    user: User
    session_id: str
    auth_time: int


class TokenView(TokenMixin):
    """An issued token row as authlib expects it."""

    def __init__(self, row: IssuedToken, *, dormant: bool = False, dead: bool = False) -> None:
        self.row = row
        # Refused for now, not revoked: its user is suspended by the mapping (README:
        # reversible, nothing is revoked), so it works again once the user is resumed.
        self.dormant = dormant
        # Dead though its row is not marked revoked: its login session or user is (live_token).
        self.dead = dead

    def check_client(self, client: ClientMixin) -> bool:
        """Was it issued to ``client``?"""
        return self.row.client_id == client.get_client_id()

    def get_scope(self) -> str:
        """Granted scope."""
        return self.row.scope

    def get_expires_in(self) -> int:
        """Seconds left."""
        if self.row.expires_at is None:
            return 0
        return max(0, int((self.row.expires_at - utcnow()).total_seconds()))

    def is_expired(self) -> bool:
        """Past its lifetime."""
        return self.row.expires_at is not None and self.row.expires_at <= utcnow()

    def is_revoked(self) -> bool:
        """Revoked by the client, by lifecycle, or its session or user is gone; or, for
        now, its user is suspended."""
        return self.dormant or self.dead or self.row.revoked_at is not None


def live_token(session: Session, plaintext: str, token_type: str | None) -> TokenView | None:
    """The token with this value (None: no such token of the portal), with whether it is
    dead or dormant: judged from its row, its user and its login session on every read.

    Nothing is written here: introspection (RFC 7662 §2.2, ``active: false``) and UserInfo
    are reads, and run as such. The token's row is not marked revoked when its login session
    or user is found dead, because no answer depends on that mark: a login session is
    revoked, and a user deprovisioned, with its tokens in the same transaction
    (app/sso/slo.py, app/sso/connection_sessions.py, app/lifecycle/revocation.py), and an
    expired login session stays expired (its ``expires_at`` is never moved), so every reader
    judging through here answers the same whether or not the row was marked; a reactivated
    user's tokens stay revoked by the deprovisioning. Marking it made every introspection of
    such a token a write: on SQLite it took the single write lock (waiting behind, and
    holding up, every writer), on PostgreSQL it waited for a lock on the token's row (a
    disable or deprovisioning in flight), and a read could fail with a lock timeout."""
    query = select(IssuedToken).where(IssuedToken.token_hash == digest(plaintext or ""))
    if token_type:
        query = query.where(IssuedToken.token_type == token_type)
    row = session.scalar(query)
    if row is None or row.user_id is None:
        return None
    user = session.get(User, row.user_id)
    login = session.get(LoginSession, row.session_id) if row.session_id else None
    # Tokens die with their login session (README): revoked, or past its expiry.
    dead = user is None or not user.active or user.status not in (
        UserStatus.active, UserStatus.suspended) or (
        login is not None and (login.revoked_at is not None or login.expires_at <= utcnow()))
    # A suspension is undone by the mapping: its tokens are refused meanwhile, not revoked.
    return TokenView(row, dormant=user is not None and user.status == UserStatus.suspended,
                     dead=dead)


def token_generator(config: ProviderConfig) -> BearerTokenGenerator:
    """Opaque random bearer tokens with our lifetimes (RFC 6750)."""
    def expires(client: Any, grant_type: str) -> int:
        return config.access_seconds

    return BearerTokenGenerator(
        access_token_generator=lambda *a, **k: "rat_" + secrets.token_urlsafe(32),
        refresh_token_generator=lambda *a, **k: "rrt_" + secrets.token_urlsafe(32),
        expires_generator=expires)


def _family_of(request: Any) -> str | None:
    """The grant new tokens belong to: the code's hash, or the refreshed token's family."""
    code = getattr(request, "authorization_code", None)
    if code is not None:
        return str(code.row.code_hash)
    refreshed = getattr(request, "refresh_token", None)
    return refreshed.row.family_id if refreshed is not None else None


def save_token(session: Session, config: ProviderConfig, token: dict[str, Any],
               request: Any) -> None:
    """Store the new access (and refresh) token hashed, bound to the login session and
    to the family of its grant.

    A refresh may ask for a narrower ``scope``: the new access token has it, the new
    refresh token keeps the scope of the one exchanged (RFC 6749 §6: "the refresh token
    scope MUST be identical"); stored with the narrower one, the grant lost its other
    scopes for good."""
    principal: Principal = request.user
    now = utcnow()
    common = {"organization_id": principal.user.organization_id,
              "user_id": principal.user.id, "session_id": principal.session_id,
              "client_id": request.client.get_client_id(), "scope": token.get("scope", ""),
              "issued_at": now, "family_id": _family_of(request)}
    session.add(IssuedToken(token_type=ACCESS, token_hash=digest(token["access_token"]),
                            expires_at=now + timedelta(seconds=config.access_seconds),
                            **common))
    if token.get("refresh_token"):
        refreshed = getattr(request, "refresh_token", None)
        if refreshed is not None:
            common["scope"] = refreshed.row.scope
        session.add(IssuedToken(token_type=REFRESH, token_hash=digest(token["refresh_token"]),
                                expires_at=now + timedelta(seconds=config.refresh_seconds),
                                **common))


def claim_code(session: Session, row: AuthorizationCode, actor: Actor) -> bool:
    """Mark the code used, once: a conditional update, so two concurrent exchanges cannot
    both win. A code already used revokes what it gave (RFC 6749 §4.1.2); False then."""
    now = utcnow()
    claimed = session.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.code_hash == row.code_hash,
               AuthorizationCode.used_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False)).rowcount
    if claimed == 1:
        return True
    revoked = revoke_family(session, row.code_hash, None, row.client_id, now)
    _audit_replay(session, actor, grant="authorization_code", user_id=row.user_id,
                  session_id=row.session_id, client_id=row.client_id, revoked=revoked)
    return False


def rotate_refresh(session: Session, token: TokenView, actor: Actor) -> bool:
    """Retire a refresh token that was just exchanged (RFC 6749 §6): revoked and marked
    rotated, once. False when another request rotated it meanwhile: that is a replay, and
    the family (the tokens just added included) is revoked."""
    row, now = token.row, utcnow()
    rotated = session.execute(
        update(IssuedToken)
        .where(IssuedToken.id == row.id, IssuedToken.rotated_at.is_(None),
               IssuedToken.revoked_at.is_(None))
        .values(revoked_at=now, rotated_at=now)
        .execution_options(synchronize_session=False)).rowcount
    if rotated == 1:
        return True
    replayed_refresh(session, row, actor)
    return False


def replayed_refresh(session: Session, row: IssuedToken, actor: Actor) -> None:
    """A rotated refresh token came back: someone holds a copy. Revoke the whole family,
    the current refresh token and every access token of the grant (RFC 9700 §4.14.2)."""
    revoked = revoke_family(session, row.family_id, row.session_id, row.client_id, utcnow())
    _audit_replay(session, actor, grant="refresh_token", user_id=row.user_id,
                  session_id=row.session_id, client_id=row.client_id, revoked=revoked)


def revoke_family(session: Session, family_id: str | None, session_id: str | None,
                  client_id: str, now: datetime) -> int:
    """Revoke the live tokens of a grant (RFC 7009 §2.1, RFC 9700 §4.14.2). Tokens from
    before migration 0017 have no family: then every token of the client on that login
    session is the family."""
    if family_id is not None:
        where = IssuedToken.family_id == family_id
    elif session_id is not None:
        where = (IssuedToken.session_id == session_id) & (IssuedToken.client_id == client_id)
    else:
        return 0
    statement = (update(IssuedToken).where(where, IssuedToken.revoked_at.is_(None))
                 .values(revoked_at=now).execution_options(synchronize_session=False))
    revoked = session.execute(statement).rowcount or 0
    if session.get_bind().dialect.name == "postgresql":
        # READ COMMITTED: a refresh of this family running meanwhile has added its new
        # tokens and locked the refresh token it rotates; the UPDATE above waited for that
        # lock, but its snapshot predates the new rows. This statement's snapshot sees them
        # (SQLite has one writer at a time: nothing can be running meanwhile).
        revoked += session.execute(statement).rowcount or 0
    return revoked


def _audit_replay(session: Session, actor: Actor, *, grant: str, user_id: str | None,
                  session_id: str | None, client_id: str, revoked: int) -> None:
    user = session.get(User, user_id) if user_id else None
    record(session, organization_id=user.organization_id if user else None,
           action=REPLAY_ACTION, actor=actor, subject_type="user", subject_id=user_id,
           data={"grant_type": grant, "client_id": client_id, "session_id": session_id,
                 "tokens_revoked": revoked})
