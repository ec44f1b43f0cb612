"""Migration 0032: the case fold brings names to NFC first, so ``José`` with a combining
accent is the user ``José``; names only normalization told apart stop the upgrade."""

from __future__ import annotations

import json
import sqlite3
import unicodedata
import uuid

import pytest
import sqlalchemy as sa

from app.db import Database
from app.errors import MigrationBlocked
from app.migrate import downgrade, upgrade
from tests.conftest import make_tenant
from tests.test_migration_runs import _revision

NFC = "José@acme.example"
NFD = unicodedata.normalize("NFD", NFC)


def _tenant_at_0031(url: str):
    upgrade(url, "0031")
    db = Database(url)
    try:
        return make_tenant(db, "acme")
    finally:
        db.dispose()


def _insert_users(url: str, tenant, users: list[tuple[str, bool]]) -> list[str]:
    """Users written as Roster wrote them before 0032 (through its connections: SQLite's
    roster_lower() of the running code folds them, PostgreSQL's lower() without
    normalization); their ids."""
    ids = []
    db = Database(url)
    try:
        with db.engine.begin() as conn:
            if db.dialect == "sqlite":  # the fold of 0012 to 0031, as the indexes were built
                conn.connection.dbapi_connection.create_function(
                    "roster_lower", 1, _fold_without_nfc, deterministic=True)
            for name, deleted in users:
                ids.append(str(uuid.uuid4()))
                conn.execute(sa.text(
                    "INSERT INTO users (id, directory_id, organization_id, user_name, active, "
                    "status, emails, phone_numbers, ims, photos, addresses, entitlements, "
                    "roles, x509_certificates, extension_data, version, created_at, "
                    "updated_at, deleted_at) VALUES (:i, :d, :o, :n, true, 'active', '[]', "
                    "'[]', '[]', '[]', '[]', '[]', '[]', '[]', '{}', 1, CURRENT_TIMESTAMP, "
                    "CURRENT_TIMESTAMP, " + ("CURRENT_TIMESTAMP)" if deleted else "NULL)")),
                    {"i": ids[-1], "d": tenant.directory.id, "o": tenant.org.id, "n": name})
    finally:
        db.dispose()
    return ids


def _fold_without_nfc(value: object) -> object:
    """roster_lower() before 0032 (the names here have no 'İ')."""
    return value.lower() if isinstance(value, str) else value


def test_0032_stops_on_two_live_users_only_normalization_told_apart(fresh_url):
    """'José' in NFC and in NFD, both live: the upgrade stops naming both, at 0031."""
    tenant = _tenant_at_0031(fresh_url)
    _insert_users(fresh_url, tenant, [(NFC, False), (NFD, False)])
    with pytest.raises(MigrationBlocked) as stopped:
        upgrade(fresh_url)
    assert repr(NFC) in str(stopped.value)
    assert repr(NFD) in str(stopped.value)
    # The two look alike on a terminal: their code points are spelled out too.
    assert r"['Jos\xe9@acme.example']" in str(stopped.value)
    assert r"['Jose\u0301@acme.example']" in str(stopped.value)
    assert _revision(fresh_url) == "0031"


def test_0032_joins_nfc_and_nfd_and_its_downgrade_parts_them_again(fresh_url):
    """A deleted NFD holder gives the name up; after the upgrade the live user is found in
    either form, a new NFD user is refused, and a previous release cannot write; the downgrade
    restores the old fold's index (a new NFD user is accepted again, the index intact)."""
    tenant = _tenant_at_0031(fresh_url)
    live, deleted = _insert_users(fresh_url, tenant, [(NFC, False), (NFD, True)])
    upgrade(fresh_url)
    db = Database(fresh_url)
    try:
        with db.engine.connect() as conn:
            names = dict(conn.execute(sa.text("SELECT id, user_name FROM users")).all())
            assert names == {live: NFC, deleted: f"{deleted}.deleted"}
            from app.models import User
            from app.sql import fold
            found = conn.execute(sa.select(User.id).where(
                User.directory_id == tenant.directory.id,
                fold(User.user_name) == fold(sa.literal(NFD.upper())))).scalars().all()
            assert found == [live]
        with pytest.raises(sa.exc.IntegrityError), db.transaction() as session:
            session.add(User(directory_id=tenant.directory.id, organization_id=tenant.org.id,
                             user_name=NFD))
    finally:
        db.dispose()
    if sa.engine.make_url(fresh_url).get_backend_name() == "sqlite":
        # A process of the previous release knows roster_lower() only: its write fails
        # instead of filing the name under the old fold's key.
        conn = sqlite3.connect(sa.engine.make_url(fresh_url).database)
        try:
            conn.create_function("roster_lower", 1, _fold_without_nfc, deterministic=True)
            with pytest.raises(sqlite3.OperationalError, match="roster_fold"):
                conn.execute("UPDATE users SET user_name = 'other@acme.example' WHERE id = ?",
                             (live,))
        finally:
            conn.close()
    downgrade(fresh_url, "0031")
    assert _revision(fresh_url) == "0031"
    _insert_users(fresh_url, tenant, [(NFD, False)])
    if sa.engine.make_url(fresh_url).get_backend_name() == "sqlite":
        # Checked with the fold the downgraded code (0031) registers.
        conn = sqlite3.connect(sa.engine.make_url(fresh_url).database)
        try:
            conn.create_function("roster_lower", 1, _fold_without_nfc, deterministic=True)
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            conn.close()


def test_0032_folds_stored_primary_emails_as_names_and_its_downgrade_lowers_them(fresh_url):
    """A primary email stored lower-cased in NFD (as before 0032) is folded to NFC, what a
    sign-in matching by email now compares; the downgrade stores it lower-cased again."""
    tenant = _tenant_at_0031(fresh_url)
    user, ascii_user = _insert_users(fresh_url, tenant, [("jose", False), ("ada", False)])
    engine = sa.create_engine(fresh_url)
    try:
        with engine.begin() as conn:
            for user_id, email in ((user, NFD.upper()), (ascii_user, "Ada@acme.example")):
                conn.execute(sa.text("UPDATE users SET emails = :j, primary_email = :p "
                                     "WHERE id = :i"),
                             {"i": user_id, "p": email.lower(), "j": json.dumps(
                                 [{"value": "x@acme.example"},
                                  {"value": email, "primary": True}])})
        upgrade(fresh_url)
        query = sa.text("SELECT id, primary_email FROM users")
        with engine.connect() as conn:
            assert dict(conn.execute(query).all()) == {
                user: NFC.lower(), ascii_user: "ada@acme.example"}
        downgrade(fresh_url, "0031")
        with engine.connect() as conn:
            assert dict(conn.execute(query).all()) == {
                user: NFD.lower(), ascii_user: "ada@acme.example"}
    finally:
        engine.dispose()


# 'İ' written as 'I' plus a combining dot above is 'İ' in NFC, which folds to 'i'; 'i' plus a
# combining dot stays so. The fold before 0032 (lower case, no normalization) joins the two.
DOTTED = ("I\u0307pek@acme.example", "i\u0307pek@acme.example")


def test_0032_downgrade_stops_on_names_only_the_old_fold_joins(fresh_url):
    """Two live users the NFC fold keeps apart but the old fold joins: the downgrade stops
    naming both (not an IntegrityError half-way through its index builds), at 0032; with
    one of them deleted it goes through, the deleted one giving its name up."""
    tenant = _tenant_at_0031(fresh_url)
    upgrade(fresh_url, "0032")
    first, second = _insert_users(fresh_url, tenant, [(DOTTED[0], False), (DOTTED[1], False)])
    with pytest.raises(MigrationBlocked) as stopped:
        downgrade(fresh_url, "0031")
    assert "roster db downgrade 0031" in str(stopped.value)
    assert first in str(stopped.value)
    assert second in str(stopped.value)
    assert _revision(fresh_url) == "0032"
    engine = sa.create_engine(fresh_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE users SET deleted_at = CURRENT_TIMESTAMP "
                                 "WHERE id = :i"), {"i": second})
        downgrade(fresh_url, "0031")
        with engine.connect() as conn:
            names = dict(conn.execute(sa.text("SELECT id, user_name FROM users")).all())
        assert names == {first: DOTTED[0], second: f"{second}.deleted"}
    finally:
        engine.dispose()
    assert _revision(fresh_url) == "0031"


def test_db_downgrade_names_what_stops_0032s_downgrade_in_lines(fresh_url):
    """`roster db downgrade 0031` stopped by two such names says so, exit 1, without the
    traceback it printed (it caught database errors only)."""
    from click.testing import CliRunner

    from app.cli import cli
    from app.cli.commands import register

    register()
    tenant = _tenant_at_0031(fresh_url)
    upgrade(fresh_url, "0032")
    _insert_users(fresh_url, tenant, [(DOTTED[0], False), (DOTTED[1], False)])
    result = CliRunner().invoke(cli, ["db", "downgrade", "0031"],
                                env={"ROSTER_DATABASE__URL": fresh_url})
    assert result.exit_code == 1, result.output
    assert "rename or delete one of each in the IdP" in result.output
    assert "Traceback" not in result.output
    assert _revision(fresh_url) == "0032"


def test_0032_downgrade_stops_on_unit_paths_only_the_old_fold_joins(fresh_url):
    """Units too: two paths the old fold joins stop the downgrade, both named."""
    tenant = _tenant_at_0031(fresh_url)
    upgrade(fresh_url, "0032")
    db = Database(fresh_url)  # on SQLite, a connection with roster_fold()
    try:
        with db.engine.begin() as conn:
            for path in DOTTED:
                conn.execute(sa.text(
                    "INSERT INTO units (id, organization_id, kind, name, path, created_at) "
                    "VALUES (:i, :o, 'department', :p, :p, CURRENT_TIMESTAMP)"),
                    {"i": str(uuid.uuid4()), "o": tenant.org.id, "p": path})
    finally:
        db.dispose()
    with pytest.raises(MigrationBlocked, match="unit paths") as stopped:
        downgrade(fresh_url, "0031")
    assert repr(DOTTED[0]) in str(stopped.value)
    assert repr(DOTTED[1]) in str(stopped.value)
    assert _revision(fresh_url) == "0032"


def test_0032_stops_on_a_postgresql_database_not_in_utf8(fresh_url):
    """normalize() runs in a UTF8 database only: on a LATIN1 one the upgrade stops with
    what to do, at 0031. Before, with no users yet it went through (an index build on an
    empty table calls nothing) and every later lookup failed; with users it failed in its
    first index build with a bare database error. (SQL_ASCII psycopg does not even connect
    to: Roster never ran there.)"""
    url = sa.engine.make_url(fresh_url)
    if url.get_backend_name() != "postgresql":
        pytest.skip("PostgreSQL's server encoding")
    admin = sa.create_engine(fresh_url, isolation_level="AUTOCOMMIT")
    name = f"{url.database}_ascii"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}" ENCODING \'LATIN1\' '
                                 "LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"))
    finally:
        admin.dispose()
    ascii_url = url.set(database=name).render_as_string(False)
    upgrade(ascii_url, "0031")
    with pytest.raises(MigrationBlocked, match=r"UTF8 encoding.*LATIN1.*createdb -E UTF8"):
        upgrade(ascii_url)
    assert _revision(ascii_url) == "0031"
