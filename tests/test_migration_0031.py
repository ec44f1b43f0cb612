"""Migration 0031: ``sso_login_traces.expires_at`` (unused since 0030, kept nullable for the
rolling deploy) is dropped, on SQLite by rebuilding the table; the downgrade adds it back,
nullable and empty, as 0030 left it, and 0030's downgrade then gives every trace an expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from app.db import Database, UTCDateTime
from app.migrate import current_revision, downgrade, upgrade
from app.models.sso import LoginTrace
from tests.conftest import make_tenant

_WRITTEN = datetime(2026, 12, 1, 12, tzinfo=UTC)
_COLUMNS = ("id", "organization_id", "protocol", "reason", "detail", "subject", "request_id",
            "created_at")


def _traces(*extra: str) -> sa.TableClause:
    return sa.table("sso_login_traces", *(sa.column(c, sa.String) for c in _COLUMNS[:-1]),
                    sa.column("payload", sa.JSON), sa.column("created_at", UTCDateTime()),
                    *(sa.column(c, UTCDateTime()) for c in extra))


def _columns(url: str) -> dict[str, dict[str, object]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {c["name"]: c for c in sa.inspect(conn).get_columns("sso_login_traces")}
    finally:
        engine.dispose()


def _rows(url: str, *extra: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            table = _traces(*extra)
            names = (*_COLUMNS, "payload", *extra)
            return [tuple(r) for r in conn.execute(
                sa.select(*(table.c[n] for n in names)).order_by(table.c.id))]
    finally:
        engine.dispose()


def test_0031_drops_the_trace_expiry_and_its_downgrade_adds_it_back_nullable(fresh_url,
                                                                           dialect):
    """Traces stored under 0030 (one with the old release's expiry, one without) keep every
    other column through the upgrade; the column is gone, and the models have none. The
    downgrade brings it back nullable and empty; below 0030 every trace has one again."""
    upgrade(fresh_url, "0030")
    db = Database(fresh_url)
    try:
        org_id = make_tenant(db, "acme").org.id
    finally:
        db.dispose()
    engine = sa.create_engine(fresh_url)
    with engine.begin() as conn:
        table = _traces("expires_at")
        for trace_id, expires in (("a", _WRITTEN + timedelta(days=7)), ("b", None)):
            conn.execute(sa.insert(table).values(
                id=trace_id, organization_id=org_id, protocol="saml", reason="replay",
                detail="d", subject="s", request_id="r", payload={"k": trace_id},
                created_at=_WRITTEN, expires_at=expires))
    engine.dispose()
    before = _rows(fresh_url)
    assert _columns(fresh_url)["expires_at"]["nullable"] is True
    upgrade(fresh_url)
    assert "expires_at" not in _columns(fresh_url)
    assert "expires_at" not in LoginTrace.__table__.c
    assert _rows(fresh_url) == before
    downgrade(fresh_url, "0030")
    engine = sa.create_engine(fresh_url)
    assert current_revision(engine) == "0030"
    engine.dispose()
    assert _columns(fresh_url)["expires_at"]["nullable"] is True
    assert _rows(fresh_url, "expires_at") == [(*row, None) for row in before]
    downgrade(fresh_url, "0029")
    assert [row[-1] for row in _rows(fresh_url, "expires_at")] == \
        [_WRITTEN + timedelta(days=30)] * 2
    upgrade(fresh_url)
    assert "expires_at" not in _columns(fresh_url)
    assert _rows(fresh_url) == before
