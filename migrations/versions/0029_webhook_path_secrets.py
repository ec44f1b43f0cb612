"""Webhook keys mask secret path segments and opaque query values too.

``webhook_deliveries.endpoint`` and ``webhook_cursors.endpoint`` name a webhook URL by its
key (app/events/endpoints.py). Since 0027 the key masked the userinfo and credential-named
query values, but kept a secret in the path (Slack's ``/services/T.../B.../<token>``) or in
another query parameter in clear. The key now also replaces each opaque path segment and
query value by ``***`` and the start of its SHA-256; stored endpoints are renamed to it.
The fingerprint keeps endpoints apart, so no two stored endpoints become one (should two
ever, one delivery per event is kept, delivered first, and their cursors are dropped, as in
0027). The downgrade cannot bring the secrets back: such a URL then counts as new and
receives the retained outbox again (receivers deduplicate on the event id).

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-06
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import unquote, urlsplit, urlunsplit

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

# app/events/endpoints.py endpoint_key as of this revision (a migration does not change
# with the code after it).
_MASK = "***"
_SECRET_PARAMETER = re.compile(
    r"(?i)token|secret|sig|key|pass|pwd|auth|code|credential|session|hash|jwt|bearer")
_OPAQUE = re.compile(r"[A-Za-z0-9._~+=@:-]{16,}")
_RUN = re.compile(r"[A-Za-z0-9]{20,}")
_CLASSES = (re.compile("[a-z]"), re.compile("[A-Z]"), re.compile("[0-9]"))
# Of an event's deliveries to endpoints that become one, the one kept.
_KEEP_FIRST = {"delivered": 0, "pending": 1, "dead": 2}


def _opaque(piece: str) -> bool:
    text = unquote(piece)
    return bool(_RUN.fullmatch(text)) or (bool(_OPAQUE.fullmatch(text)) and sum(
        bool(c.search(text)) for c in _CLASSES) >= 2)


def _fingerprint(piece: str) -> str:
    return _MASK + hashlib.sha256(piece.encode()).hexdigest()[:6]


def _query(query: str) -> str:
    pieces = []
    for piece in query.split("&"):
        name, equals, value = piece.partition("=")
        if equals and _SECRET_PARAMETER.search(unquote(name.replace("+", " "))):
            pieces.append(f"{name}={_MASK}")
        elif equals and _opaque(value):
            pieces.append(f"{name}={_fingerprint(value)}")
        else:
            pieces.append(_fingerprint(piece) if not equals and _opaque(piece) else piece)
    return "&".join(pieces)


def _key(url: str) -> str:
    parts = urlsplit(url)
    netloc = f"{_MASK}@{parts.netloc.rpartition('@')[2]}" if "@" in parts.netloc \
        else parts.netloc
    path = "/".join(_fingerprint(s) if _opaque(s) else s for s in parts.path.split("/"))
    query = _query(parts.query) if parts.query else parts.query
    if (netloc, path, query) == (parts.netloc, parts.path, parts.query):
        return url
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


_DELIVERIES = sa.table("webhook_deliveries", sa.column("id", sa.BigInteger),
                       sa.column("outbox_id", sa.BigInteger), sa.column("endpoint", sa.String),
                       sa.column("status", sa.String))
_CURSORS = sa.table("webhook_cursors", sa.column("endpoint", sa.String))


def _merge_deliveries(bind: sa.Connection, members: list[str]) -> None:
    """Keep one delivery per event of endpoints that become one; delete the others."""
    kept: dict[int, tuple[int, int]] = {}
    drop: list[int] = []
    for row in bind.execute(sa.select(_DELIVERIES.c.id, _DELIVERIES.c.outbox_id,
                                      _DELIVERIES.c.status)
                            .where(_DELIVERIES.c.endpoint.in_(members))):
        rank = (_KEEP_FIRST.get(row.status, 3), row.id)
        best = kept.get(row.outbox_id)
        if best is not None and best < rank:
            drop.append(row.id)
            continue
        if best is not None:
            drop.append(best[1])
        kept[row.outbox_id] = rank
    for start in range(0, len(drop), 500):
        bind.execute(sa.delete(_DELIVERIES).where(
            _DELIVERIES.c.id.in_(drop[start:start + 500])))


def upgrade() -> None:
    """Rename stored endpoints to their keys (secret path segments and values masked)."""
    bind = op.get_bind()
    endpoints = set(bind.execute(sa.select(_DELIVERIES.c.endpoint).distinct()).scalars()) | \
        set(bind.execute(sa.select(_CURSORS.c.endpoint)).scalars())
    groups: dict[str, list[str]] = {}
    for endpoint in endpoints:
        groups.setdefault(_key(endpoint), []).append(endpoint)
    for key, members in sorted(groups.items()):
        if members == [key]:
            continue
        if len(members) > 1:
            _merge_deliveries(bind, members)
            bind.execute(sa.delete(_CURSORS).where(_CURSORS.c.endpoint.in_(members)))
        else:
            bind.execute(sa.update(_CURSORS).where(_CURSORS.c.endpoint.in_(members))
                         .values(endpoint=key))
        bind.execute(sa.update(_DELIVERIES).where(_DELIVERIES.c.endpoint.in_(members))
                     .values(endpoint=key))


def downgrade() -> None:
    """Nothing to undo: the secrets are not stored to be brought back."""
