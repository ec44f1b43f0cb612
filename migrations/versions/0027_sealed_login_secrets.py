"""Secrets at rest: login secrets sealed, webhook credentials out of the tables.

* ``oidc_login_requests.code_verifier`` holds the PKCE verifier sealed (Fernet under a key
  derived from ``app.secret_key``, app/sso/sealed.py) instead of in clear: the column is
  widened for the token, and the verifiers of attempts in flight, stored in clear, are
  cleared (such a login ends with ``missing_pkce_verifier``; the user signs in again).
* ``login_sessions.upstream_id_token``: the customer IdP's ID token of an OIDC login,
  sealed, kept for the logout at the IdP (it was in the browser's signed cookie).
* ``webhook_deliveries.endpoint`` and ``webhook_cursors.endpoint`` name a webhook URL by its
  key, the URL with its credentials masked (userinfo, credential-like query values;
  app/events/endpoints.py), no longer by the URL itself. Endpoints that differ only in
  credentials (a URL whose token was changed) become one: of their deliveries of one event
  one is kept (delivered first, then pending, then dead), and their fan-out cursors are
  dropped, so the endpoint reads the retained outbox again from the oldest event, as after
  ``roster events reset-cursor`` (an event it has a delivery of is not sent again). The
  downgrade cannot bring the credentials back: a URL with credentials then counts as new
  and receives the retained outbox again (receivers deduplicate on the event id).

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


# app/events/endpoints.py endpoint_key as of this revision (a migration does not change
# with the code after it).
_MASK = "***"
_SECRET_PARAMETER = re.compile(
    r"(?i)token|secret|sig|key|pass|pwd|auth|code|credential|session|hash|jwt|bearer")
# Of an event's deliveries to endpoints that become one, the one kept.
_KEEP_FIRST = {"delivered": 0, "pending": 1, "dead": 2}


def _key(url: str) -> str:
    parts = urlsplit(url)
    netloc = f"{_MASK}@{parts.netloc.rpartition('@')[2]}" if "@" in parts.netloc \
        else parts.netloc
    pieces = []
    for piece in parts.query.split("&") if parts.query else []:
        name, equals, _value = piece.partition("=")
        secret = equals and _SECRET_PARAMETER.search(unquote(name.replace("+", " ")))
        pieces.append(f"{name}={_MASK}" if secret else piece)
    query = "&".join(pieces)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_DELIVERIES = sa.table("webhook_deliveries", sa.column("id", sa.BigInteger),
                       sa.column("outbox_id", sa.BigInteger), sa.column("endpoint", sa.String),
                       sa.column("status", sa.String))
_CURSORS = sa.table("webhook_cursors", sa.column("endpoint", sa.String))


def _mask_webhook_endpoints() -> None:
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
    """Clear the clear verifiers, widen their column, add the sealed upstream ID token;
    name webhook endpoints by their keys."""
    _mask_webhook_endpoints()
    op.execute("UPDATE oidc_login_requests SET code_verifier = NULL")
    if op.get_bind().dialect.name == "postgresql":  # SQLite does not enforce the length
        op.alter_column("oidc_login_requests", "code_verifier", type_=sa.String(255),
                        existing_nullable=True)
    op.add_column("login_sessions", sa.Column("upstream_id_token", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop the sealed ID tokens (a logout then goes to the IdP without id_token_hint) and
    the sealed verifiers (attempts in flight end with ``missing_pkce_verifier``)."""
    op.drop_column("login_sessions", "upstream_id_token")
    op.execute("UPDATE oidc_login_requests SET code_verifier = NULL")
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("oidc_login_requests", "code_verifier", type_=sa.String(128),
                        existing_nullable=True)
