"""Migrations: empty -> head -> base on the test database, and models match migrations."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from app.db import Base
from app.errors import MigrationBlocked
from app.migrate import current_revision, downgrade, head_revision, upgrade
from app.sql import fold_text


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_to_head_then_downgrade_to_base(fresh_url):
    """Upgrading creates every model table; downgrading removes them all."""
    upgrade(fresh_url)
    engine = sa.create_engine(fresh_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()
    assert _tables(fresh_url) == set(Base.metadata.tables)
    downgrade(fresh_url, "base")
    assert _tables(fresh_url) == set()
    upgrade(fresh_url)
    assert _tables(fresh_url) == set(Base.metadata.tables)


def test_models_and_migrations_agree(database_url):
    """Autogenerate finds no difference between the migrated schema and the models."""
    engine = sa.create_engine(database_url)
    with engine.connect() as conn, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}),
                                Base.metadata)
    engine.dispose()
    # Expression indexes (lower(...)) cannot be reflected on SQLite; they are checked below.
    assert [d for d in diff if not _is_expression_index(d)] == []


def _is_expression_index(diff: object) -> bool:
    return isinstance(diff, tuple) and diff[0] in ("add_index", "remove_index") and \
        diff[1].name in ("uq_users_directory_username", "uq_groups_directory_display_name",
                         "uq_units_org_path")


def test_case_insensitive_uniqueness_is_enforced_by_the_database(db, tenant):
    """Two users (or groups) whose names differ only in case cannot both be stored."""
    from app.models import Group, User

    for model, field in ((User, "user_name"), (Group, "display_name")):
        with pytest.raises(sa.exc.IntegrityError), db.transaction() as session:
            for value in ("Alice@Acme.com", "alice@acme.COM"):
                session.add(model(directory_id=tenant.directory.id,
                                  organization_id=tenant.org.id, **{field: value}))
                session.flush()


def _insert_as_before_0011(url: str, directory_id: str, org_id: str,
                           users: list[tuple[str, bool]], groups: list[str],
                           roster_lower: Any = None) -> list[str]:
    """Rows written through SQLite's built-in (ASCII-only) lower(), as Roster wrote them
    before migration 0011 (or through ``roster_lower``, when the indexes used that);
    returns the users' ids."""
    import sqlite3
    import uuid

    conn = sqlite3.connect(sa.engine.make_url(url).database)
    if roster_lower is not None:
        conn.create_function("roster_lower", 1, roster_lower, deterministic=True)
    ids = []
    try:
        for name, deleted in users:
            ids.append(str(uuid.uuid4()))
            conn.execute(
                "INSERT INTO users (id, directory_id, organization_id, user_name, active, "
                "status, emails, phone_numbers, ims, photos, addresses, entitlements, roles, "
                "x509_certificates, extension_data, version, created_at, updated_at, "
                "deleted_at) VALUES (?, ?, ?, ?, 1, 'active', '[]', '[]', '[]', '[]', '[]', "
                "'[]', '[]', '[]', '{}', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00', ?)",
                (ids[-1], directory_id, org_id, name, "2026-02-01 00:00:00" if deleted else None))
        for name in groups:
            conn.execute(
                "INSERT INTO groups (id, directory_id, organization_id, display_name, "
                "extension_data, version, created_at, updated_at) VALUES (?, ?, ?, ?, '{}', 1, "
                "'2026-01-01 00:00:00', '2026-01-01 00:00:00')",
                (str(uuid.uuid4()), directory_id, org_id, name))
        conn.commit()
    finally:
        conn.close()
    return ids


def test_0011_rebuilds_the_name_indexes_on_a_unicode_fold(fresh_url, dialect):
    """SQLite: the unique name indexes move to roster_lower(); names stored before 0011 are
    found in another case afterwards (through the index), a deleted user's clashing name
    is released, and the database refuses a clashing new name.
    PostgreSQL folds with its (UTF-8) locale; 0011 changes nothing there."""
    from app.db import Database
    from tests.conftest import make_tenant

    upgrade(fresh_url, "0010")
    db = Database(fresh_url)
    tenant = make_tenant(db, "acme")
    db.dispose()
    if dialect != "sqlite":
        upgrade(fresh_url)
        engine = sa.create_engine(fresh_url)
        try:
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT lower('ÖZIL Ärzte')").scalar() == \
                    "özil ärzte"
        finally:
            engine.dispose()
        return
    live, deleted = _insert_as_before_0011(
        fresh_url, tenant.directory.id, tenant.org.id,
        [("ÖZIL@x.de", False), ("özil@x.de", True)], ["Ärzte"])
    upgrade(fresh_url)
    with _upgraded(fresh_url, tenant, live, deleted, "ÖZIL@x.de", "özil@x.de",
                   "özil@X.DE") as conn:
        assert conn.execute(sa.text(
            "SELECT count(*) FROM groups WHERE roster_fold(display_name) = 'ärzte'")
        ).scalar() == 1


@contextmanager
def _upgraded(url: str, tenant, live: str, deleted: str, name: str, folded: str,
              clashing: str) -> Iterator[sa.Connection]:
    """After a fold migration: the live user keeps ``name`` and is found by ``folded``
    through the unique index, the deleted one gave the name up, the database is intact
    and refuses ``clashing``; yields a connection for more checks."""
    from app.db import Database

    db = Database(url)
    try:
        with db.engine.connect() as conn:
            names = dict(conn.execute(sa.text("SELECT id, user_name FROM users")).all())
            assert names == {live: name, deleted: f"{deleted}.deleted"}
            # At head the index is on roster_fold() (0032).
            lookup = ("SELECT id FROM users WHERE directory_id = :d "
                      "AND roster_fold(user_name) = :n")
            params = {"d": tenant.directory.id, "n": folded}
            assert conn.execute(sa.text(lookup), params).scalars().all() == [live]
            plan = " ".join(str(r[3]) for r in conn.execute(
                sa.text("EXPLAIN QUERY PLAN " + lookup), params))
            assert "uq_users_directory_username" in plan, plan
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
            yield conn
        with pytest.raises(sa.exc.IntegrityError):
            _insert_through(db, tenant, clashing)
    finally:
        db.dispose()


def _insert_through(db, tenant, user_name: str) -> None:
    from app.models import User

    with db.transaction() as session:
        session.add(User(directory_id=tenant.directory.id, organization_id=tenant.org.id,
                         user_name=user_name))


def test_0011_stops_on_two_live_users_it_would_merge(fresh_url, dialect):
    """Two live users that only SQLite's ASCII lower() kept apart: the upgrade stops with
    both named, and the database stays at 0010 for the admin to resolve it in the IdP."""
    if dialect != "sqlite":
        upgrade(fresh_url)  # nothing to merge: PostgreSQL's lower() folded them all along
        return
    tenant = _tenant_at(fresh_url, "0010")
    _insert_as_before_0011(fresh_url, tenant.directory.id, tenant.org.id,
                           [("ÉLAN@x.fr", False), ("élan@x.fr", False)], [])
    _assert_upgrade_stops(fresh_url, ["ÉLAN@x.fr", "élan@x.fr"], "0010")


def _assert_upgrade_stops(url: str, names: list[str], stays_at: str) -> None:
    """The upgrade stops naming each of ``names``, and the database stays where it was."""
    with pytest.raises(MigrationBlocked) as stopped:
        upgrade(url)
    for name in names:
        assert repr(name) in str(stopped.value)
    engine = sa.create_engine(url)
    try:
        assert current_revision(engine) == stays_at
    finally:
        engine.dispose()


def _insert_as_before_0012(url: str, tenant, users: list[tuple[str, bool]]) -> list[str]:
    """Users written while roster_lower() was Python's full str.lower (0011); their ids."""
    return _insert_as_before_0011(
        url, tenant.directory.id, tenant.org.id, users, [],
        roster_lower=lambda v: v.lower() if isinstance(v, str) else v)


def _tenant_at(url: str, revision: str):
    from app.db import Database
    from tests.conftest import make_tenant

    upgrade(url, revision)
    db = Database(url)
    try:
        return make_tenant(db, "acme")
    finally:
        db.dispose()


def test_0012_folds_names_as_postgresql_does(fresh_url, dialect):
    """SQLite: the name indexes are rebuilt with Unicode's simple mapping, PostgreSQL's
    lower(): 'İpek' stored under 0011 is found as 'ipek' through the index, a deleted
    'ipek' gives the name up, and a new 'IPEK' is refused. PostgreSQL: lower() already
    maps 'İ' to 'i' and a final 'Σ' to the medial sigma; 0012 changes nothing there."""
    if dialect != "sqlite":
        upgrade(fresh_url)
        engine = sa.create_engine(fresh_url)
        try:
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT lower('İPEK ΣΟΦΊΑΣ')").scalar() == \
                    fold_text("İPEK ΣΟΦΊΑΣ") == "ipek \u03c3\u03bf\u03c6\u03af\u03b1\u03c3"
        finally:
            engine.dispose()
        return
    tenant = _tenant_at(fresh_url, "0011")
    live, deleted = _insert_as_before_0012(fresh_url, tenant,
                                           [("İpek@x.tr", False), ("ipek@x.tr", True)])
    upgrade(fresh_url)
    with _upgraded(fresh_url, tenant, live, deleted, "İpek@x.tr", "ipek@x.tr", "IPEK@x.tr"):
        pass


def test_0012_stops_on_two_live_users_it_would_merge(fresh_url, dialect):
    """Two live users the full mapping kept apart ('İ' against 'i'): the upgrade stops
    with both named and the database stays at 0011."""
    if dialect != "sqlite":
        upgrade(fresh_url)
        return
    tenant = _tenant_at(fresh_url, "0011")
    _insert_as_before_0012(fresh_url, tenant, [("İlker@x.tr", False), ("ilker@x.tr", False)])
    _assert_upgrade_stops(fresh_url, ["İlker@x.tr", "ilker@x.tr"], "0011")


def test_0015_keeps_the_name_a_deleted_user_gave_up_before_it(fresh_url):
    """Users renamed "<id>.deleted" before 0015 get back, as the name they gave up, the
    userName of their latest deprovisioning record; other users get none."""
    from app.db import Database
    from app.directory.users import UserInput, create_user, remove_user
    from app.models import User
    from tests.conftest import OPERATOR, make_tenant

    upgrade(fresh_url)
    db = Database(fresh_url)
    try:
        tenant = make_tenant(db, "acme")
        ids = []
        for external_id in ("first", "second"):
            with db.transaction() as session:
                user = create_user(session, tenant.directory, UserInput(
                    {"user_name": "pat@x.example", "external_id": external_id}), OPERATOR)
                ids.append(user.id)
            if external_id == "first":
                with db.transaction() as session:
                    remove_user(session, session.get(User, user.id), OPERATOR)
    finally:
        db.dispose()
    downgrade(fresh_url, "0014")
    upgrade(fresh_url)
    engine = sa.create_engine(fresh_url)
    try:
        with engine.connect() as conn:
            found = dict(conn.execute(sa.text(
                "SELECT id, released_user_name FROM users")).all())
    finally:
        engine.dispose()
    assert found == {ids[0]: "pat@x.example", ids[1]: None}


def test_0020_converts_fan_out_cursors_without_losing_or_repeating_an_event(fresh_url,
                                                                             dialect):
    """0019's fan-out cursors (an id, maybe one pending) become positions in the feed's
    windows: every event reaches each endpoint once across the upgrade, a downgrade and an
    upgrade again, and a converted cursor does not read the history again from the start."""
    from app.db import Database, utcnow
    from app.events.delivery import WebhookConfig, fan_out

    upgrade(fresh_url, "0019")
    engine = sa.create_engine(fresh_url)
    with engine.begin() as conn:
        for n in range(1, 5):
            conn.execute(sa.text(
                "INSERT INTO outbox_events (event_id, type, payload, created_at) "
                "VALUES (:e, 'test.event', '{}', CURRENT_TIMESTAMP)"), {"e": f"ev{n}"})
        for endpoint, outbox_ids in (("http://a.test/", (1, 2, 3)), ("http://b.test/", (1,))):
            for outbox_id in outbox_ids:
                conn.execute(sa.text(
                    "INSERT INTO webhook_deliveries (outbox_id, event_id, endpoint, status, "
                    "attempts, created_at, next_attempt_at) VALUES (:o, :e, :u, 'pending', 0, "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                    {"o": outbox_id, "e": f"ev{outbox_id}", "u": endpoint})
        # a: past 2, and 3 seen but not passed yet; b: nothing passed (one fanned out).
        conn.execute(sa.text("INSERT INTO webhook_cursors (endpoint, last_outbox_id, "
                             "pending_outbox_id, pending_xmax) VALUES "
                             "('http://a.test/', 2, 3, 1), ('http://b.test/', 0, NULL, NULL)"))
    engine.dispose()
    config = WebhookConfig(urls=("http://a.test/", "http://b.test/"), secret="s")

    def fan_out_and_count() -> dict[tuple[str, int], int]:
        db = Database(fresh_url)
        try:
            with db.transaction() as session:
                fan_out(session, config, utcnow())
        finally:
            db.dispose()
        found = sa.create_engine(fresh_url)
        try:
            with found.connect() as conn:
                return {(r.endpoint, r.outbox_id): r.n for r in conn.execute(sa.text(
                    "SELECT endpoint, outbox_id, count(*) AS n FROM webhook_deliveries "
                    "GROUP BY endpoint, outbox_id"))}
        finally:
            found.dispose()

    everything = {(u, n): 1 for u in config.urls for n in range(1, 5)}
    upgrade(fresh_url)
    if dialect == "postgresql":
        engine = sa.create_engine(fresh_url)
        with engine.connect() as conn:
            position = conn.scalar(sa.text(
                "SELECT position FROM webhook_cursors WHERE endpoint = 'http://a.test/'"))
        engine.dispose()
        assert position[1] is not None  # resumes from a snapshot, not from the start
    assert fan_out_and_count() == everything
    downgrade(fresh_url, "0019")
    engine = sa.create_engine(fresh_url)
    with engine.connect() as conn:
        assert set(conn.scalars(sa.text("SELECT last_outbox_id FROM webhook_cursors"))) == {4}
    engine.dispose()
    upgrade(fresh_url)
    assert fan_out_and_count() == everything


def _units(url: str, statement: str, **params: object) -> None:
    """Run one statement through the app's engine (SQLite: with its fold functions)."""
    from app.db import Database

    db = Database(url)
    try:
        with db.engine.begin() as conn:
            conn.execute(sa.text(statement), params)
    finally:
        db.dispose()


def test_0022_makes_unit_paths_unique_in_any_case(fresh_url):
    """Units whose paths differ only in case (made before 0022) stop the upgrade, each
    named with its id, and nothing changes; once one is gone, the upgrade builds the folded
    index, which refuses a path in another case."""
    tenant = _tenant_at(fresh_url, "0021")
    insert = ("INSERT INTO units (id, organization_id, kind, name, path, created_at) "
              "VALUES (:i, :o, 'department', :n, :n, CURRENT_TIMESTAMP)")
    for unit_id, name in (("u1", "Sales"), ("u2", "SALES"), ("u3", "Legal")):
        _units(fresh_url, insert, i=unit_id, o=tenant.org.id, n=name)
    with pytest.raises(MigrationBlocked) as stopped:
        upgrade(fresh_url)
    assert "'SALES' (u2)" in str(stopped.value)
    assert "'Sales' (u1)" in str(stopped.value)
    assert "Legal" not in str(stopped.value)
    engine = sa.create_engine(fresh_url)
    assert current_revision(engine) != head_revision()
    engine.dispose()
    _units(fresh_url, "DELETE FROM units WHERE id = 'u2'")
    upgrade(fresh_url)
    with pytest.raises(sa.exc.IntegrityError):
        _units(fresh_url, insert, i="u4", o=tenant.org.id, n="sales")
    downgrade(fresh_url, "0021")
    _units(fresh_url, insert, i="u4", o=tenant.org.id, n="sales")


def test_0023_downgrade_keeps_cursors_from_before_pruned_marks_expired(fresh_url):
    """Marks pruned under 0023 stay pruned after a downgrade, and 0022's check has no
    floor: the downgrade leaves a mark no position has passed at the newest pruned epoch,
    so a cursor from before it is still expired, and one issued since is not checked
    against it."""
    upgrade(fresh_url)
    engine = sa.create_engine(fresh_url)
    insert = sa.text("INSERT INTO outbox_purges (id, cluster_id, max_id, max_txid, events, "
                     "purged_at, pruned_through) VALUES (:i, NULL, :m, NULL, 1, "
                     "CURRENT_TIMESTAMP, :p)")
    with engine.begin() as conn:  # marks 1..4 pruned; 5 and 6 kept, 5 the oldest
        conn.execute(insert, {"i": 5, "m": 50, "p": 4})
        conn.execute(insert, {"i": 6, "m": 60, "p": None})
    engine.dispose()
    downgrade(fresh_url, "0022")
    engine = sa.create_engine(fresh_url)
    with engine.connect() as conn:
        marks = conn.execute(sa.text(
            "SELECT id, max_id, max_txid FROM outbox_purges ORDER BY id")).all()
    engine.dispose()
    assert [tuple(m) for m in marks] == [(4, 2**63 - 1, 2**63 - 1), (5, 50, None),
                                         (6, 60, None)]
    upgrade(fresh_url)
