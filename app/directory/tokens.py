"""SCIM bearer tokens (RFC 6750): issued once, stored as SHA-256, rotated with overlap."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, bindparam, func, select, update
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import Reader, core, utcnow
from app.directory.names import shown_ref
from app.directory.refs import DirectoryRef, TokenRef
from app.errors import Conflict, NotFound, Unauthorized
from app.models import Directory, DirectoryToken
from app.models.directory import DirectoryStatus
from app.sql import fetch

TOKEN_PREFIX = "rst_"  # noqa: S105 - a public marker, not a secret
# Writing last_used_at on every request would turn each read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# One issuer of a directory's tokens at a time (PostgreSQL): an advisory transaction lock,
# not the directory's row, which every SCIM write holds FOR SHARE.
_ISSUE_LOCK = select(func.pg_advisory_xact_lock(bindparam("b_key", type_=BigInteger)))


def hash_token(plaintext: str) -> str:
    """SHA-256 hex of a token: tokens carry 256 random bits, so no slow hash is needed."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def is_valid(token: DirectoryToken, now: datetime) -> bool:
    """Neither revoked nor expired."""
    return token.revoked_at is None and (token.expires_at is None or token.expires_at > now)


def valid_tokens(session: Session, directory: Directory) -> list[DirectoryToken]:
    """The tokens of ``directory`` that would authenticate right now."""
    now = utcnow()
    tokens = session.scalars(
        select(DirectoryToken).where(DirectoryToken.directory_id == directory.id)
    )
    return [t for t in tokens if is_valid(t, now)]


def issue_token(session: Session, directory: Directory, actor: Actor, *, days: int,
                max_valid: int) -> tuple[DirectoryToken, str]:
    """Create a token; returns the row and the plaintext, which is never stored or shown again.

    Two issues for one directory run one after the other (PostgreSQL; SQLite has one
    writer): each counted the valid tokens before the other committed, so a double submit
    of a rotation left three valid tokens where ``max_valid`` allows two.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_ISSUE_LOCK, {"b_key": _issue_lock_key(directory.id)})
    if len(valid_tokens(session, directory)) >= max_valid:
        raise Conflict(
            f"directory {directory.name!r} already has {max_valid} valid tokens; "
            "revoke one before issuing another", field="directory",
        )
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = DirectoryToken(
        directory_id=directory.id, token_hash=hash_token(plaintext), prefix=plaintext[:10],
        created_at=utcnow(), expires_at=utcnow() + timedelta(days=days) if days else None,
    )
    session.add(token)
    session.flush()
    record(session, organization_id=directory.organization_id,
           action="directory_token:create", actor=actor, subject_type="directory_token",
           subject_id=token.id, data={"directory_id": directory.id, "prefix": token.prefix,
                                      "expires_at": _iso(token.expires_at)})
    return token, plaintext


def _issue_lock_key(directory_id: str) -> int:
    """The directory's token-issue advisory-lock key: a signed 64-bit hash in its own
    namespace (the mapping's is ``roster.mapping``)."""
    digest = hashlib.blake2b(directory_id.encode(), digest_size=8, person=b"roster.tokens")
    return int.from_bytes(digest.digest(), "big", signed=True)


def revoke_token(session: Session, directory: Directory, token_ref: str,
                 actor: Actor) -> DirectoryToken:
    """Revoke one token of ``directory`` by id or prefix; it stops working at once."""
    token = session.scalar(select(DirectoryToken).where(
        DirectoryToken.directory_id == directory.id,
        (DirectoryToken.id == token_ref) | (DirectoryToken.prefix == token_ref),
    ))
    if token is None:
        raise NotFound(f"token {shown_ref(token_ref)} does not exist for this directory",
                       field="token")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        record(session, organization_id=directory.organization_id,
               action="directory_token:revoke", actor=actor, subject_type="directory_token",
               subject_id=token.id, data={"directory_id": directory.id, "prefix": token.prefix})
    return token


def list_tokens(session: Session, directory: Directory) -> list[DirectoryToken]:
    """Every token of ``directory``, newest first (no secrets: only prefixes)."""
    return list(session.scalars(
        select(DirectoryToken).where(DirectoryToken.directory_id == directory.id)
        .order_by(DirectoryToken.created_at.desc())
    ))


# Token and directory in one query on the unique token_hash index (every SCIM request),
# as plain columns on the connection: no ORM objects to build or track.
_AUTHENTICATE = (
    select(DirectoryToken.id, DirectoryToken.token_hash, DirectoryToken.expires_at,
           DirectoryToken.revoked_at, DirectoryToken.last_used_at, Directory.id,
           Directory.organization_id, Directory.status)
    .join(Directory, Directory.id == DirectoryToken.directory_id)
    .where(DirectoryToken.token_hash == bindparam("digest"))
)


def authenticate(session: Reader, plaintext: str) -> tuple[DirectoryRef, TokenRef]:
    """Resolve a bearer token to its active directory, or raise Unauthorized (RFC 6750 §3.1).

    Nothing is written here: when ``last_used_at`` is stale the returned TokenRef carries
    ``touch_at`` and the caller stamps it with ``touch`` where a write is safe.
    """
    digest = hash_token(plaintext)
    found = fetch(core(session), _AUTHENTICATE, {"digest": digest})
    row = found[0] if found else None
    # The lookup is by hash; comparing digests in constant time closes the remaining gap.
    if row is None or not hmac.compare_digest(row[1], digest):
        raise Unauthorized("the bearer token is not valid")
    token_id, _hash, expires_at, revoked_at, last_used_at, directory_id, org_id, status = row
    now = utcnow()
    if revoked_at is not None or (expires_at is not None and expires_at <= now):
        raise Unauthorized("the bearer token has expired or was revoked")
    if status != DirectoryStatus.active:
        raise Unauthorized("the directory of this token is disabled")
    stale = last_used_at is None or now - last_used_at > LAST_USED_RESOLUTION
    return (DirectoryRef(directory_id, org_id),
            TokenRef(token_id, "directory_token", now if stale else None))


def touch(session: Session, token: TokenRef) -> None:
    """Stamp a directory token's ``last_used_at`` with ``token.touch_at`` (once a minute)."""
    if token.kind == "directory_token" and token.touch_at is not None:
        session.connection().execute(
            update(DirectoryToken).where(DirectoryToken.id == token.id)
            .values(last_used_at=token.touch_at))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
