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
from app.migrate import current_revision, downgrade, upgrade
from tests.conftest import make_tenant

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


def _revision(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        return current_revision(engine)
    finally:
        engine.dispose()


def test_0032_stops_on_two_live_users_only_normalization_told_apart(fresh_url):
    """'José' in NFC and in NFD, both live: the upgrade stops naming both, at 0031."""
    tenant = _tenant_at_0031(fresh_url)
    _insert_users(fresh_url, tenant, [(NFC, False), (NFD, False)])
    with pytest.raises(MigrationBlocked) as stopped:
        upgrade(fresh_url)
    assert repr(NFC) in str(stopped.value)
    assert repr(NFD) in str(stopped.value)
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
