"""OAuth 2.0 client credentials of a directory (RFC 6749 §4.4) and the access tokens issued.

The client secret and every access token are stored only as SHA-256 (both carry 256
random bits, so a slow hash adds nothing) and compared in constant time. Access tokens
live in ``issued_tokens`` next to the SSO ones, so lifecycle revocation sees them all.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import Reader, core, utcnow
from app.directory.refs import DirectoryRef, TokenRef
from app.directory.tokens import authenticate, hash_token
from app.errors import Conflict, NotFound, Unauthorized
from app.models import Directory
from app.models.directory import DirectoryStatus
from app.models.scim_ops import OAuthClient
from app.models.sso import IssuedToken

CLIENT_PREFIX = "rsc_"
SECRET_PREFIX = "rss_"  # noqa: S105 - a public marker, not a secret
ACCESS_TOKEN_PREFIX = "rsa_"  # noqa: S105 - a public marker, not a secret
ACCESS = "access"  # issued_tokens.token_type of these tokens
# The one scope a directory's client has (RFC 6749 §3.3): its directory's whole SCIM API.
# It is the default when a token request names none, so a client never has to ask for it.
SCIM_SCOPE = "scim"


def active_client(session: Session, directory: Directory) -> OAuthClient | None:
    """The directory's unrevoked OAuth client, if it has one."""
    return session.scalar(select(OAuthClient).where(
        OAuthClient.directory_id == directory.id, OAuthClient.revoked_at.is_(None)))


def create_client(session: Session, directory: Directory, actor: Actor) -> tuple[OAuthClient, str]:
    """Give ``directory`` a client id and secret; returns the row and the secret (shown once)."""
    if active_client(session, directory) is not None:
        raise Conflict(f"directory {directory.name!r} already has an OAuth client; rotate its "
                       "secret or revoke it first", field="directory")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    client = OAuthClient(client_id=CLIENT_PREFIX + secrets.token_hex(12),
                         directory_id=directory.id, secret_hash=hash_token(secret),
                         created_at=utcnow())
    session.add(client)
    session.flush()
    _audit(session, directory, client, actor, "oauth_client:create")
    return client, secret


def rotate_secret(session: Session, directory: Directory, actor: Actor) -> tuple[OAuthClient, str]:
    """A new secret for the directory's client; the old one stops working at once.

    Access tokens already issued stay valid until they expire, so the IdP keeps syncing
    while its admin pastes the new secret.
    """
    client = _require_client(session, directory)
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    client.secret_hash = hash_token(secret)
    client.rotated_at = utcnow()
    _audit(session, directory, client, actor, "oauth_client:rotate")
    return client, secret


def revoke_client(session: Session, directory: Directory, actor: Actor) -> OAuthClient:
    """Revoke the directory's client and every access token it was issued."""
    client = _require_client(session, directory)
    now = utcnow()
    client.revoked_at = now
    session.execute(update(IssuedToken).where(
        IssuedToken.client_id == client.client_id, IssuedToken.revoked_at.is_(None),
    ).values(revoked_at=now))
    _audit(session, directory, client, actor, "oauth_client:revoke")
    return client


def find_client(session: Session, client_id: str) -> OAuthClient | None:
    """An unrevoked client of an active directory, by client id (an id holding NUL names
    none, and is not even looked up: PostgreSQL cannot compare it)."""
    if "\x00" in client_id:
        return None
    client = session.get(OAuthClient, client_id)
    if client is None or client.revoked_at is not None:
        return None
    directory = session.get(Directory, client.directory_id)
    if directory is None or directory.status != DirectoryStatus.active:
        return None
    return client


def check_secret(client: OAuthClient, secret: str) -> bool:
    """Whether ``secret`` is the client's current secret (constant-time comparison)."""
    return hmac.compare_digest(client.secret_hash, hash_token(secret))


def store_access_token(session: Session, client: OAuthClient, plaintext: str,
                       expires_in: int, scope: str) -> IssuedToken:
    """Keep the hash of an access token issued to ``client`` for ``expires_in`` seconds,
    with the scope granted."""
    directory = session.get(Directory, client.directory_id)
    now = utcnow()
    token = IssuedToken(
        organization_id=directory.organization_id if directory else None,
        directory_id=client.directory_id, client_id=client.client_id, token_type=ACCESS,
        token_hash=hash_token(plaintext), scope=scope, issued_at=now,
        expires_at=now + timedelta(seconds=expires_in),
    )
    session.add(token)
    return token


_ACCESS_TOKEN = (
    select(IssuedToken.id, IssuedToken.token_hash, IssuedToken.expires_at,
           IssuedToken.revoked_at, Directory.id, Directory.organization_id, Directory.status,
           IssuedToken.client_id)
    .join(Directory, Directory.id == IssuedToken.directory_id)
    .where(IssuedToken.token_hash == bindparam("digest"), IssuedToken.token_type == ACCESS)
)


def authenticate_access_token(session: Reader,
                              plaintext: str) -> tuple[DirectoryRef, TokenRef]:
    """Resolve an OAuth access token to its active directory, or raise Unauthorized."""
    digest = hash_token(plaintext)
    row = core(session).execute(_ACCESS_TOKEN, {"digest": digest}).first()
    if row is None or not hmac.compare_digest(row[1], digest):
        raise Unauthorized("the bearer token is not valid")
    token_id, _hash, expires_at, revoked_at, directory_id, org_id, status, client_id = row
    if revoked_at is not None or _expired(expires_at, utcnow()):
        raise Unauthorized("the bearer token has expired or was revoked")
    if status != DirectoryStatus.active:
        raise Unauthorized("the directory of this token is disabled")
    return (DirectoryRef(directory_id, org_id),
            TokenRef(token_id, "access_token", client_id=client_id))


def authenticate_bearer(session: Reader, plaintext: str) -> tuple[DirectoryRef, TokenRef]:
    """A directory token or an OAuth access token (RFC 6750 §2.1), by its prefix."""
    if plaintext.startswith(ACCESS_TOKEN_PREFIX):
        return authenticate_access_token(session, plaintext)
    return authenticate(session, plaintext)


def _expired(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and expires_at <= now


def _require_client(session: Session, directory: Directory) -> OAuthClient:
    client = active_client(session, directory)
    if client is None:
        raise NotFound(f"directory {directory.name!r} has no OAuth client; create one first",
                       field="directory")
    return client


def _audit(session: Session, directory: Directory, client: OAuthClient, actor: Actor,
           action: str) -> None:
    record(session, organization_id=directory.organization_id, action=action, actor=actor,
           subject_type="oauth_client", subject_id=client.client_id,
           data={"directory_id": directory.id})
