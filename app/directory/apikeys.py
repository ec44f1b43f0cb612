"""API keys of /api/v1 callers: issued once, stored as SHA-256, rotated, revoked.

Roles are declared in ``app.models.api.ApiRole``; what each role may do is the API layer's
business (``app/api/permissions.py``). Only operator keys are deployment-wide.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import as_stored, utcnow
from app.directory.names import checked_name, shown_ref
from app.errors import InvalidInput, NotFound, Unauthorized
from app.models import Organization
from app.models.api import ApiKey, ApiRole

KEY_PREFIX = "rk_"  # a public marker, so leaked keys are recognisable by scanners
PREFIX_LENGTH = 11
# Writing last_used_at on every request would turn each read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_RELATIVE = re.compile(r"^(\d{1,5})([dhw])\Z")


@dataclass(frozen=True)
class KeyIdentity:
    """An authenticated key, detached from any session."""

    id: str
    role: ApiRole
    organization_id: str | None
    prefix: str
    needs_touch: bool


def hash_key(plaintext: str) -> str:
    """SHA-256 hex of a key: keys carry 256 random bits, so no slow hash is needed."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def parse_expiry(value: str | None, now: datetime | None = None) -> datetime | None:
    """``90d``, ``12h``, ``2w`` or an ISO date/datetime (UTC) -> an aware datetime."""
    if not value:
        return None
    now = now or utcnow()
    if match := _RELATIVE.match(value.strip()):
        amount, unit = int(match.group(1)), match.group(2)
        if amount == 0:  # now: create_key refused it later as "expires_at is in the past"
            raise InvalidInput(f"expiry {value!r} must be in the future (1{unit} at least)",
                               field="expires")
        delta = {"d": timedelta(days=amount), "h": timedelta(hours=amount),
                 "w": timedelta(weeks=amount)}[unit]
        return now + delta
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(f"expiry {value!r} must look like 90d, 12h, 2w or 2027-01-01",
                           field="expires") from None
    if len(value.strip()) == len("2027-01-01"):
        parsed = datetime.combine(date.fromisoformat(value.strip()), time(), tzinfo=UTC)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed <= now:
        raise InvalidInput(f"expiry {value!r} is in the past", field="expires")
    return parsed.astimezone(UTC)


def is_valid(key: ApiKey, now: datetime) -> bool:
    """Neither revoked nor expired."""
    return key.revoked_at is None and (key.expires_at is None or key.expires_at > now)


def key_state(key: ApiKey, now: datetime) -> str:
    """``valid``, ``revoked`` or ``expired``."""
    if key.revoked_at is not None:
        return "revoked"
    return "valid" if is_valid(key, now) else "expired"


def create_key(session: Session, role: str, organization: Organization | None, actor: Actor,
               *, name: str = "", expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """Issue a key; returns the row and the plaintext, which is never stored or shown again."""
    try:
        api_role = ApiRole(role)
    except ValueError:
        roles = ", ".join(r.value for r in ApiRole)
        raise InvalidInput(f"role {role!r} is not one of {roles}", field="role") from None
    if api_role is ApiRole.operator and organization is not None:
        raise InvalidInput("operator keys are deployment-wide; omit the organization",
                           field="organization")
    if api_role is not ApiRole.operator and organization is None:
        raise InvalidInput(f"{api_role.value} keys must be bound to an organization",
                           field="organization")
    checked_name(name, "API key name", optional=True)
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput("expires_at is in the past", field="expires_at")
    if expires_at is not None:  # as stored: the answer and the audit record say so
        expires_at = as_stored(expires_at)
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(role=api_role, organization_id=organization.id if organization else None,
                 key_hash=hash_key(plaintext), prefix=plaintext[:PREFIX_LENGTH],
                 name=name.strip(), created_at=utcnow(), expires_at=expires_at)
    session.add(key)
    session.flush()
    record(session, organization_id=key.organization_id, action="api_key:create", actor=actor,
           subject_type="api_key", subject_id=key.id,
           data={"role": api_role.value, "prefix": key.prefix, "name": key.name,
                 "expires_at": key.expires_at.isoformat() if key.expires_at else None})
    return key, plaintext


def get_key(session: Session, ref: str) -> ApiKey:
    """Find a key by id or display prefix."""
    key = session.scalar(select(ApiKey).where((ApiKey.id == ref) | (ApiKey.prefix == ref)))
    if key is None:
        raise NotFound(f"API key {shown_ref(ref)} does not exist", field="key")
    return key


def list_keys(session: Session, organization: Organization | None = None) -> list[ApiKey]:
    """Keys (of one organization, or all), oldest first; no secrets, only prefixes."""
    stmt = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if organization is not None:
        stmt = stmt.where(ApiKey.organization_id == organization.id)
    return list(session.scalars(stmt))


def revoke_key(session: Session, key: ApiKey, actor: Actor) -> ApiKey:
    """Revoke a key; it stops working at once. Revoking twice changes nothing."""
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        record(session, organization_id=key.organization_id, action="api_key:revoke",
               actor=actor, subject_type="api_key", subject_id=key.id,
               data={"prefix": key.prefix})
    return key


def rotate_key(session: Session, key: ApiKey, actor: Actor, *,
               expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """Issue a replacement with the same role, organization and name, then revoke ``key``.

    The new key expires at ``expires_at``, else when the old one does. An expired key has
    no expiry left to keep: its replacement needs ``expires_at`` (it got none, so a key
    made to last 30 days came back as one that never expires).
    """
    if key.revoked_at is not None:
        raise InvalidInput(f"API key {key.prefix} is revoked; create a new one", field="key")
    if expires_at is None and key.expires_at is not None and key.expires_at <= utcnow():
        raise InvalidInput(f"API key {key.prefix} expired on {key.expires_at:%Y-%m-%d %H:%M} "
                           "UTC; give its replacement an expiry (--expires 90d)",
                           field="expires")
    organization = session.get(Organization, key.organization_id) if key.organization_id \
        else None
    new, plaintext = create_key(session, key.role.value, organization, actor, name=key.name,
                                expires_at=expires_at or key.expires_at)
    revoke_key(session, key, actor)
    record(session, organization_id=key.organization_id, action="api_key:rotate", actor=actor,
           subject_type="api_key", subject_id=new.id,
           data={"replaces": key.id, "prefix": new.prefix})
    return new, plaintext


def authenticate(session: Session, plaintext: str) -> KeyIdentity:
    """Resolve a bearer key to its identity, or raise Unauthorized (RFC 6750 §3.1)."""
    digest = hash_key(plaintext)
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    # The lookup is by hash; comparing digests in constant time closes the remaining gap.
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        raise Unauthorized("the API key is not valid")
    now = utcnow()
    if not is_valid(key, now):
        raise Unauthorized(f"the API key {key.prefix}... has expired or was revoked")
    if key.organization_id is None and key.role is not ApiRole.operator:
        # Only an operator key is deployment-wide. create_key never makes an org-less key of
        # another role, but a row made another way (by hand, a restore) must not act as one.
        raise Unauthorized(f"the API key {key.prefix}... is bound to no organization")
    stale = key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION
    return KeyIdentity(id=key.id, role=key.role, organization_id=key.organization_id,
                       prefix=key.prefix, needs_touch=stale)


def touch_key(session: Session, key_id: str) -> None:
    """Record that a key was used just now (at most once per LAST_USED_RESOLUTION)."""
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))
