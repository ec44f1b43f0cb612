"""Migration 0033: an admin, auditor or portal API key without an organization cannot be
stored (a CHECK); the upgrade stops, naming them and changing nothing, while such rows
exist; the downgrade drops the constraint."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register
from app.db import Database, UTCDateTime
from app.migrate import current_revision, downgrade, head_revision, upgrade
from tests.conftest import make_tenant

_KEYS = sa.table("api_keys", *(sa.column(c, sa.String) for c in (
    "id", "role", "organization_id", "key_hash", "prefix", "name")),
    sa.column("created_at", UTCDateTime()), sa.column("revoked_at", UTCDateTime()))


def _org_at(url: str, revision: str) -> str:
    upgrade(url, revision)
    db = Database(url)
    try:
        return make_tenant(db, "acme").org.id
    finally:
        db.dispose()


def _insert(url: str, key_id: str, role: str, org_id: str | None, *,
            revoked: bool = False) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(_KEYS).values(
                id=key_id, role=role, organization_id=org_id, key_hash=key_id.ljust(64, "0"),
                prefix=f"rk_{key_id[:8]}", name=f"{key_id} key",
                created_at=datetime(2026, 12, 1, tzinfo=UTC),
                revoked_at=datetime(2026, 12, 2, tzinfo=UTC) if revoked else None))
    finally:
        engine.dispose()


def _state(url: str) -> tuple[str | None, list[tuple[str, str, str | None]]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            keys = [tuple(r) for r in conn.execute(sa.text(
                "SELECT id, role, organization_id FROM api_keys ORDER BY id"))]
        return current_revision(engine), keys
    finally:
        engine.dispose()


def test_0033_stops_naming_org_role_keys_without_an_organization(fresh_url):
    """`roster db upgrade` with an admin key and a revoked portal key stored without an
    organization: exit 1, both named in lines under one sentence saying what to do, no
    traceback, the database still at 0032 with every key as it was. With them deleted, the
    upgrade runs."""
    register()
    org_id = _org_at(fresh_url, "0032")
    _insert(fresh_url, "operator1", "operator", None)
    _insert(fresh_url, "admin1", "admin", org_id)
    _insert(fresh_url, "orphan-admin", "admin", None)
    _insert(fresh_url, "orphan-portal", "portal", None, revoked=True)
    before = _state(fresh_url)
    result = CliRunner().invoke(cli, ["db", "upgrade"], env={"ROSTER_DATABASE__URL": fresh_url})
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("Error: 2 admin, auditor or portal API key(s) belong to no "
                               "organization"), lines
    assert "then run `roster db upgrade` again:" in lines[0]
    assert lines[1:] == ["  orphan-admin rk_orphan-a... admin 'orphan-admin key'",
                         "  orphan-portal rk_orphan-p... portal 'orphan-portal key' (revoked)"]
    assert _state(fresh_url) == before
    assert before[0] == "0032"
    engine = sa.create_engine(fresh_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM api_keys WHERE id LIKE 'orphan-%'"))
    engine.dispose()
    result = CliRunner().invoke(cli, ["db", "upgrade"], env={"ROSTER_DATABASE__URL": fresh_url})
    assert result.exit_code == 0, result.output
    assert _state(fresh_url) == (head_revision(), [("admin1", "admin", org_id),
                                          ("operator1", "operator", None)])


@pytest.mark.parametrize("role", ["admin", "auditor", "portal"])
def test_0033_refuses_storing_an_org_role_key_without_an_organization(fresh_url, role):
    """At 0033 the database itself refuses the row (operator keys without an organization
    and org keys with theirs are stored); after the downgrade to 0032 it is stored again,
    and the keys stored meanwhile are all kept through both rebuilds."""
    org_id = _org_at(fresh_url, "0032")
    upgrade(fresh_url, "0033")
    _insert(fresh_url, "operator1", "operator", None)
    _insert(fresh_url, "admin1", role, org_id)
    with pytest.raises(sa.exc.IntegrityError):
        _insert(fresh_url, "orphan", role, None)
    assert _state(fresh_url)[1] == [("admin1", role, org_id), ("operator1", "operator", None)]
    downgrade(fresh_url, "0032")
    _insert(fresh_url, "orphan", role, None)
    assert _state(fresh_url) == ("0032", [("admin1", role, org_id), ("operator1", "operator",
                                                                     None),
                                          ("orphan", role, None)])
    engine = sa.create_engine(fresh_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM api_keys WHERE id = 'orphan'"))
    engine.dispose()
    upgrade(fresh_url, "0033")
    assert _state(fresh_url)[0] == "0033"
