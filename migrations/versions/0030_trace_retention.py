"""Login traces are kept by their age under the retention as it is now; SQLite's
code_verifier column says what PostgreSQL's says; webhook keys mask secret host labels.

* ``sso_login_traces``: each trace's expiry was fixed when it was written
  (``expires_at``, the ``sso.trace_retention_days`` of that moment), so a changed retention
  applied only to traces written afterwards: shortened (a privacy request, a smaller
  database), the traces already stored stayed for the old period. The SSO purge, the
  listings and the lookup by correlation id now go by ``created_at`` (older than the
  retention as it is now: expired), which gets an index so the purge's delete is still
  found by index (ix_sso_login_traces_org_created leads with the organization and cannot
  serve it). ``expires_at`` is no longer written nor read: it becomes nullable and loses
  its index, and stays so a node of the previous release can still write a trace during a
  rolling deploy (such a node does not list a trace written by this release).
* ``oidc_login_requests.code_verifier``: 0027 widened it to VARCHAR(255) on PostgreSQL
  only (SQLite does not enforce a VARCHAR's length); SQLite's table is rebuilt so its
  declaration says 255 as well.

* ``webhook_deliveries.endpoint`` and ``webhook_cursors.endpoint``: a webhook key
  (app/events/endpoints.py, app/url_masks.py) now also fingerprints an opaque label of the
  URL's host name before its last two (an AWS Lambda function URL's id, a request bin's:
  the host is the receiver's whole credential), which it kept in clear; stored endpoints
  are renamed to their keys, as 0029 did for path secrets (should two stored endpoints
  become one, one delivery per event is kept, delivered first, and their cursors dropped).

Cost: on SQLite both tables are rebuilt (copied) under the upgrade's write lock; on
PostgreSQL the index is built inside the migration's transaction under a SHARE lock on
``sso_login_traces`` (a refused login's trace waits meanwhile, about a second per million
traces) and the other changes touch the catalogue only.

The downgrade gives traces written since the upgrade an ``expires_at`` of ``created_at``
plus 30 days (the default ``sso.trace_retention_days``: a migration does not read the
settings), restores its index and NOT NULL, drops the ``created_at`` index and declares
SQLite's code_verifier VARCHAR(128) again (its sealed verifiers are longer: SQLite keeps
them; PostgreSQL's column stays as 0027 left it). It cannot bring a host secret back into a
stored key: such a URL then counts as a new endpoint and receives the retained outbox again
(receivers deduplicate on the event id), as after 0029's downgrade.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-07
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from urllib.parse import unquote, urlsplit, urlunsplit

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

_CREATED = "ix_sso_login_traces_created_at"
_EXPIRES = "ix_sso_login_traces_expires_at"
# The default sso.trace_retention_days, for the traces the downgrade must give an expiry.
_DEFAULT_RETENTION = timedelta(days=30)
_BATCH = 500

_TRACES = sa.table("sso_login_traces", sa.column("id", sa.String),
                   sa.column("created_at", app.db.UTCDateTime(timezone=True)),
                   sa.column("expires_at", app.db.UTCDateTime(timezone=True)))


# app/url_masks.py masked_url as of this revision (a migration does not change with the
# code after it).
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


def _netloc(netloc: str) -> str:
    _userinfo, at, hostport = netloc.rpartition("@")
    host, colon, port = hostport, "", ""
    if not hostport.startswith("[") and ":" in hostport:
        host, colon, port = hostport.rpartition(":")
    labels = host.split(".")
    if not host.startswith("[") and not all(label.isdigit() for label in labels):
        secret = {label for label in labels[:-2] if _opaque(label.lower())}
        host = ".".join(_fingerprint(label.lower()) if label in secret else label
                        for label in labels)
    return f"{_MASK}@{host}{colon}{port}" if at else f"{host}{colon}{port}"


def _key(url: str) -> str:
    parts = urlsplit(url)
    netloc = _netloc(parts.netloc)
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


def _rename_endpoints(bind: sa.Connection) -> None:
    """Rename stored endpoints to their keys (secret host labels fingerprinted)."""
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


def upgrade() -> None:
    """Index the traces' creation, free their expiry; SQLite: code_verifier VARCHAR(255);
    webhook endpoints renamed to their keys."""
    _rename_endpoints(op.get_bind())
    with op.batch_alter_table("sso_login_traces") as batch:
        batch.alter_column("expires_at", existing_type=app.db.UTCDateTime(timezone=True),
                           nullable=True)
        batch.drop_index(_EXPIRES)
        batch.create_index(_CREATED, ["created_at"])
    _forget_statistics(_EXPIRES)
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("oidc_login_requests") as batch:
            batch.alter_column("code_verifier", existing_type=sa.String(128),
                               type_=sa.String(255), existing_nullable=True)


def downgrade() -> None:
    """Give every trace an expiry again (created_at + 30 days where it has none), restore
    its index and NOT NULL; SQLite: code_verifier VARCHAR(128) again. Webhook keys stay
    (the secrets are not stored to be brought back)."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        with op.batch_alter_table("oidc_login_requests") as batch:
            batch.alter_column("code_verifier", existing_type=sa.String(255),
                               type_=sa.String(128), existing_nullable=True)
    while True:
        rows = bind.execute(sa.select(_TRACES.c.id, _TRACES.c.created_at)
                            .where(_TRACES.c.expires_at.is_(None)).limit(_BATCH)).all()
        if not rows:
            break
        bind.execute(sa.update(_TRACES).where(_TRACES.c.id == sa.bindparam("trace_id"))
                     .values(expires_at=sa.bindparam("expiry")),
                     [{"trace_id": row.id, "expiry": row.created_at + _DEFAULT_RETENTION}
                      for row in rows])
    with op.batch_alter_table("sso_login_traces") as batch:
        batch.drop_index(_CREATED)
        batch.create_index(_EXPIRES, ["expires_at"])
        batch.alter_column("expires_at", existing_type=app.db.UTCDateTime(timezone=True),
                           nullable=False)
    _forget_statistics(_CREATED)


def _forget_statistics(index: str) -> None:
    # SQLite keeps a dropped index's sqlite_stat1 row; it would describe nothing.
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql(
            "SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_stat1'").first():
        bind.execute(sa.text("DELETE FROM sqlite_stat1 WHERE idx = :i"), {"i": index})
