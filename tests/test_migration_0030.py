"""Migration 0030: login traces kept by age (``created_at`` indexed, ``expires_at`` no longer
required) and SQLite's code_verifier declared VARCHAR(255). Rows stored before it keep
their values through the upgrade, and the downgrade gives traces written since an expiry
again, so the previous release lists and purges them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from app.db import Database, UTCDateTime
from app.migrate import downgrade, upgrade
from tests.conftest import make_tenant
from tests.sso.conftest import saml_connection

_TRACES = sa.table("sso_login_traces", sa.column("id", sa.String),
                   sa.column("organization_id", sa.String), sa.column("protocol", sa.String),
                   sa.column("reason", sa.String), sa.column("detail", sa.String),
                   sa.column("payload", sa.JSON),
                   sa.column("created_at", UTCDateTime()), sa.column("expires_at", UTCDateTime()))
_ATTEMPTS = sa.table("oidc_login_requests", sa.column("id", sa.String),
                     sa.column("connection_id", sa.String), sa.column("nonce", sa.String),
                     sa.column("code_verifier", sa.String),
                     sa.column("created_at", UTCDateTime()),
                     sa.column("expires_at", UTCDateTime()))
_WRITTEN = datetime(2026, 12, 1, 12, tzinfo=UTC)
# A sealed verifier (Fernet token) is about 140 characters: longer than 0027's 128 limit.
_VERIFIER = "gAAAAA" + "x" * 194


def _trace(conn: sa.Connection, trace_id: str, org_id: str, expires: datetime | None) -> None:
    conn.execute(sa.insert(_TRACES).values(
        id=trace_id, organization_id=org_id, protocol="saml", reason="replay", detail="",
        payload={}, created_at=_WRITTEN, expires_at=expires))


def _state(url: str) -> dict[str, object]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            traces = {c["name"]: c for c in inspector.get_columns("sso_login_traces")}
            verifier = {c["name"]: c for c in inspector.get_columns("oidc_login_requests")}
            return {
                "expires_nullable": traces["expires_at"]["nullable"],
                "indexes": sorted(i["name"] for i in inspector.get_indexes("sso_login_traces")),
                "verifier_length": verifier["code_verifier"]["type"].length,
                "traces": {r.id: r.expires_at for r in conn.execute(
                    sa.select(_TRACES.c.id, _TRACES.c.expires_at))},
                "verifiers": conn.execute(sa.text(
                    "SELECT code_verifier FROM oidc_login_requests")).scalars().all()}
    finally:
        engine.dispose()


def test_0030_keeps_stored_rows_and_its_downgrade_gives_new_traces_an_expiry(fresh_url,
                                                                             dialect):
    """A trace and a sealed verifier stored under 0029 are intact after 0030; a trace
    written under 0030 (no expires_at) gets created_at + 30 days on the downgrade, the
    earlier one keeps its own; the schema is 0029's again, then 0030's."""
    upgrade(fresh_url, "0029")
    db = Database(fresh_url)
    try:
        tenant = make_tenant(db, "acme")
        conn_id = saml_connection(db, tenant, []).id
        with db.engine.begin() as conn:
            conn.execute(sa.insert(_ATTEMPTS).values(
                id="s1", connection_id=conn_id, nonce="n", code_verifier=_VERIFIER,
                created_at=_WRITTEN, expires_at=_WRITTEN))
            _trace(conn, "before", tenant.org.id, _WRITTEN + timedelta(days=7))
    finally:
        db.dispose()
    before = _state(fresh_url)
    assert before["expires_nullable"] is False
    upgrade(fresh_url, "0030")  # 0031 drops expires_at
    after = _state(fresh_url)
    assert after["expires_nullable"] is True
    assert after["verifier_length"] == 255
    assert "ix_sso_login_traces_created_at" in after["indexes"]
    assert "ix_sso_login_traces_expires_at" not in after["indexes"]
    assert after["traces"] == before["traces"]
    assert after["verifiers"] == [_VERIFIER]
    engine = sa.create_engine(fresh_url)
    with engine.begin() as conn:
        _trace(conn, "after", tenant.org.id, None)
    engine.dispose()
    downgrade(fresh_url, "0029")
    again = _state(fresh_url)
    assert again["traces"] == {"before": _WRITTEN + timedelta(days=7),
                               "after": _WRITTEN + timedelta(days=30)}
    assert again["verifiers"] == [_VERIFIER]
    assert {k: again[k] for k in ("expires_nullable", "indexes", "verifier_length")} == \
        {k: before[k] for k in ("expires_nullable", "indexes", "verifier_length")}
    upgrade(fresh_url, "0030")
    assert _state(fresh_url)["indexes"] == after["indexes"]
