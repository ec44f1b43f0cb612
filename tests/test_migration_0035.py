"""Migration 0035: ``sso_subject_links`` (unique per connection and subject, and per
connection and user; rows go with their connection or user, ON DELETE CASCADE on both
databases); the downgrade drops it, and the upgrade runs again."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.db import Database, new_id
from app.migrate import current_revision, downgrade, upgrade
from app.models import User
from app.models.sso import SsoConnection
from tests.conftest import make_tenant

INSERT = sa.text("INSERT INTO sso_subject_links (id, connection_id, subject, user_id, "
                 "created_at, last_login_at) VALUES (:id, :c, :s, :u, CURRENT_TIMESTAMP, "
                 "CURRENT_TIMESTAMP)")


def _tables(url: str) -> tuple[str | None, bool]:
    engine = sa.create_engine(url)
    try:
        return current_revision(engine), "sso_subject_links" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def _fixture(database: Database) -> tuple[list[str], list[str]]:
    """Two users and two connections of one organization: (user ids, connection ids)."""
    tenant = make_tenant(database, "acme")
    with database.transaction() as s:
        users = [User(directory_id=tenant.directory.id, organization_id=tenant.org.id,
                      user_name=name, emails=[], primary_email=name)
                 for name in ("alice@acme.com", "bob@acme.com")]
        conns = [SsoConnection(organization_id=tenant.org.id, name=name, protocol="oidc",
                               idp_certs=[], attribute_map={}, oidc_algorithms=[])
                 for name in ("okta", "entra")]
        s.add_all([*users, *conns])
    return [u.id for u in users], [c.id for c in conns]


def _links(database: Database) -> list[tuple[str, str, str]]:
    with database.engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(sa.text(
            "SELECT connection_id, subject, user_id FROM sso_subject_links")))


def _insert(database: Database, connection_id: str, subject: str, user_id: str) -> None:
    with database.engine.begin() as conn:
        conn.execute(INSERT, {"id": new_id(), "c": connection_id, "s": subject, "u": user_id})


def test_0035_links_are_unique_go_with_their_rows_and_the_downgrade_drops_them(fresh_url):
    """Up from 0034: one subject and one user per connection (a second of either is an
    IntegrityError), the same subject on another connection is fine; deleting a user or a
    connection deletes its links. Down to 0034: no table; up again: the table is back."""
    upgrade(fresh_url, "0034")
    assert _tables(fresh_url) == ("0034", False)
    database = Database(fresh_url)
    try:
        (alice, bob), (okta, entra) = _fixture(database)
        upgrade(fresh_url, "0035")
        assert _tables(fresh_url) == ("0035", True)
        _insert(database, okta, "sub-1", alice)
        _insert(database, entra, "sub-1", bob)
        _insert(database, entra, "sub-2", alice)
        for again in ((okta, "sub-1", bob), (okta, "sub-9", alice)):
            with pytest.raises(sa.exc.IntegrityError):
                _insert(database, *again)
        assert _links(database) == sorted([(okta, "sub-1", alice), (entra, "sub-1", bob),
                                           (entra, "sub-2", alice)])
        with database.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM users WHERE id = :u"), {"u": bob})
        assert _links(database) == sorted([(okta, "sub-1", alice), (entra, "sub-2", alice)])
        with database.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM sso_connections WHERE id = :c"), {"c": okta})
        assert _links(database) == [(entra, "sub-2", alice)]
    finally:
        database.dispose()
    downgrade(fresh_url, "0034")
    assert _tables(fresh_url) == ("0034", False)
    upgrade(fresh_url, "0035")
    assert _tables(fresh_url) == ("0035", True)
