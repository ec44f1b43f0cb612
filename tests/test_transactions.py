"""One unit of work is one transaction: a failure midway leaves no row behind."""

from __future__ import annotations

import pytest

from app.directory.organizations import create_organization
from app.errors import Conflict
from app.mapping.catalog import RoleSpec
from tests.conftest import CATALOG, OPERATOR, rows


def test_failure_midway_through_a_write_leaves_nothing(db):
    """Org, audit rows and the first roles are flushed, then a duplicate role fails: all gone."""
    catalog = [*CATALOG, RoleSpec(key="buyer", name="Buyer again")]
    with pytest.raises(Conflict), db.transaction() as session:
        create_organization(session, "acme", "Acme", catalog, OPERATOR)
    for table in ("organizations", "roles", "audit_events", "audit_chain_heads"):
        assert rows(db, f"SELECT count(*) FROM {table}")[0][0] == 0, table


def test_unexpected_exception_rolls_back(db):
    """Any exception inside the block rolls the whole unit back."""
    with pytest.raises(RuntimeError), db.transaction() as session:
        create_organization(session, "acme", "Acme", CATALOG, OPERATOR)
        session.flush()
        raise RuntimeError("boom")
    assert rows(db, "SELECT count(*) FROM organizations")[0][0] == 0


def test_successful_unit_commits_change_and_audit_together(db):
    """The change and its audit events are committed together."""
    with db.transaction() as session:
        create_organization(session, "acme", "Acme", CATALOG, OPERATOR)
    assert rows(db, "SELECT count(*) FROM organizations")[0][0] == 1
    actions = {r[0] for r in rows(db, "SELECT action FROM audit_events")}
    assert {"organization:create", "role:create"} <= actions


def test_insert_row_applies_defaults_and_leaves_a_persistent_object(db, tenant):
    """app.db.insert_row writes the row at once with the columns' defaults, and the object
    is in the session like a flushed one: a later change is an UPDATE, rollback undoes all."""
    from sqlalchemy import inspect

    from app.db import insert_row
    from app.models import User

    with db.transaction() as session:
        user = insert_row(session, User, {"directory_id": tenant.directory.id,
                                          "organization_id": tenant.org.id,
                                          "user_name": "now@acme.com", "display_name": None})
        assert inspect(user).persistent
        assert session.get(User, user.id) is user
        assert not session.dirty
        assert not session.new
        assert len(user.id) == 36
        assert user.emails == []
        assert user.version == 1
        assert user.active is True
        user.title = "Buyer"
    stored = rows(db, "SELECT id, title, emails, version, display_name FROM users")
    assert [(r[0], r[1], r[3], r[4]) for r in stored] == [(user.id, "Buyer", 1, None)]
    assert stored[0][2] in ([], "[]")
    with pytest.raises(RuntimeError), db.transaction() as session:
        insert_row(session, User, {"directory_id": tenant.directory.id,
                                   "organization_id": tenant.org.id,
                                   "user_name": "gone@acme.com"})
        raise RuntimeError("boom")
    assert rows(db, "SELECT count(*) FROM users") == [(1,)]


def test_insert_row_refuses_a_value_for_no_column(db, tenant):
    """A misspelt column is a TypeError before anything is written, not a silent drop."""
    from app.db import insert_row
    from app.models import User

    with pytest.raises(TypeError, match="user_nmae"), db.transaction() as session:
        insert_row(session, User, {"directory_id": tenant.directory.id,
                                   "organization_id": tenant.org.id, "user_nmae": "x"})
    assert rows(db, "SELECT count(*) FROM users") == [(0,)]


def test_insert_unique_turns_a_lost_race_into_conflict(db, tenant):
    """The unique userName index, hit by insert_unique, is a Conflict, not a 500."""
    from app.directory.uniqueness import insert_unique
    from app.models import User

    user = {"directory_id": tenant.directory.id, "organization_id": tenant.org.id,
            "user_name": "Same@acme.com"}

    with db.transaction() as session:
        insert_unique(session, User, user, ("user_name", "uq_users"), "taken", "userName")
    with pytest.raises(Conflict) as caught, db.transaction() as session:
        insert_unique(session, User, user, ("user_name", "uq_users"), "taken", "userName")
    assert caught.value.detail == "taken"


def test_json_columns_read_back_as_fresh_values(db, tenant):
    """Empty JSON lists and objects skip the parser (app.engine.json_loads, SQLite's text and
    psycopg's bytes) but each row still gets its own list; other values decode as JSON."""
    from sqlalchemy import select

    from app.models import User

    with db.transaction() as session:
        for name, emails in (("a@acme.com", []), ("b@acme.com", []),
                             ("c@acme.com", [{"value": "c@acme.com", "primary": True}])):
            session.add(User(directory_id=tenant.directory.id, organization_id=tenant.org.id,
                             user_name=name, emails=emails, extension_data={}))
    with db.transaction(readonly=True) as session:
        found = session.execute(select(User.__table__.c.emails, User.__table__.c.extension_data)
                                .order_by(User.__table__.c.user_name)).all()
    (a, a_ext), (b, _), (c, _) = found
    assert (a, b, a_ext) == ([], [], {})
    a.append("x")
    assert b == []
    assert c == [{"value": "c@acme.com", "primary": True}]


def test_reader_is_a_snapshot_on_sqlite_and_autocommit_on_postgresql(db, tenant):
    """``Database.reader``: on SQLite one read transaction, whose snapshot hides a user
    committed meanwhile; on PostgreSQL autocommit (no BEGIN or COMMIT round trips), each
    statement its own transaction, seeing what READ COMMITTED would see."""
    from sqlalchemy import text

    from app.db import insert_row
    from app.models import User

    count = text("SELECT count(*) FROM users")
    with db.reader() as connection:
        before = connection.execute(count).scalar()
        with db.transaction() as session:  # another connection commits a user meanwhile
            insert_row(session, User, {"directory_id": tenant.directory.id,
                                       "organization_id": tenant.org.id,
                                       "user_name": "meanwhile@acme.com"})
        after = connection.execute(count).scalar()
        if db.dialect == "postgresql":
            own = connection.execute(
                text("SELECT transaction_timestamp() = statement_timestamp()")).scalar()
            assert own is True  # the statement began its own transaction: no BEGIN before
    assert (before, after) == ((0, 0) if db.dialect == "sqlite" else (0, 1))


def test_write_transactions_after_readers_are_still_transactions(db, tenant):
    """The readers' autocommit (PostgreSQL) stays with them: a unit of work on a pooled
    connection a reader used before still begins a transaction and rolls back whole."""
    from sqlalchemy import text

    from app.db import insert_row
    from app.models import User

    for attempt in range(8):
        with db.reader() as connection:
            connection.execute(text("SELECT 1"))
        with pytest.raises(RuntimeError), db.transaction() as session:
            insert_row(session, User, {"directory_id": tenant.directory.id,
                                       "organization_id": tenant.org.id,
                                       "user_name": f"gone{attempt}@acme.com"})
            if db.dialect == "postgresql":
                assert session.execute(text(
                    "SELECT transaction_timestamp() < statement_timestamp()")).scalar() is True
            raise RuntimeError("boom")
    assert rows(db, "SELECT count(*) FROM users") == [(0,)]
