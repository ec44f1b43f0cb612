"""Shared fixtures: one migrated database and one app per test worker, cleaned per test.

The database is SQLite by default; with ROSTER_TEST_PG_URL (set by script/test) it is a
fresh PostgreSQL database per xdist worker on the throwaway server.
"""

from __future__ import annotations

import os

# Fail fast on a libxml2 mismatch: xmlsec must be imported before lxml.
import xmlsec  # noqa: F401  isort: skip
import lxml.etree  # noqa: F401  isort: skip

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.audit import Actor
from app.db import Base, Database
from app.directory.directories import create_directory
from app.directory.organizations import create_organization
from app.directory.tokens import issue_token
from app.mapping.catalog import load_catalog
from app.migrate import upgrade
from app.models import Directory, Organization
from app.scim.recorder import flush as flush_recorder
from app.settings import ROOT

for _name in list(os.environ):
    if _name.startswith("ROSTER_") and not _name.startswith("ROSTER_TEST_"):
        del os.environ[_name]
# The suite's IdPs (SimpleSAMLphp, canaille, the hostile IdP) run on 127.0.0.1, which
# sso.idp_private_addresses refuses by default: every app and CLI run of the suite allows
# it; tests/sso/test_idp_private_addresses.py turns it off again through overrides.
os.environ["ROSTER_SSO__IDP_PRIVATE_ADDRESSES"] = "true"

OPERATOR = Actor(type="operator", id="tests")
CATALOG = load_catalog(ROOT / "config" / "roles.toml")


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def fresh_database_url(tmp_path_factory: pytest.TempPathFactory, name: str) -> str:
    """A new, empty database: a SQLite file, or a new PostgreSQL database."""
    server = os.environ.get("ROSTER_TEST_PG_URL")
    if not server:
        return f"sqlite:///{tmp_path_factory.mktemp(name) / 'roster.db'}"
    dbname = f"roster_{name}_{_worker()}".replace("-", "_").lower()
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{dbname}"'))
    admin.dispose()
    return str(sa.engine.make_url(server).set(database=dbname).render_as_string(False))


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The migrated database this worker's app uses."""
    url = fresh_database_url(tmp_path_factory, "suite")
    upgrade(url)
    return url


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Iterator[Database]:
    """A bare SQLite file ``w.db`` with one table ``t (n, at)``, for the tests of the SQLite
    plumbing (writers' queue, held connections); disposed afterwards."""
    database = Database(f"sqlite:///{tmp_path / 'w.db'}", busy_timeout_ms=5000)
    with database.transaction() as session:
        session.execute(sa.text("CREATE TABLE t (n INTEGER, at REAL)"))
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def dialect(database_url: str) -> str:
    """``sqlite`` or ``postgresql``."""
    return sa.engine.make_url(database_url).get_backend_name()


def app_overrides(database_url: str) -> dict[str, dict[str, object]]:
    """Settings every test app uses."""
    return {"app": {"env": "test", "base_url": "http://roster.test"},
            "database": {"url": database_url}, "logging": {"level": "WARNING"},
            # High limits, counted in memory: tests that need 429 set a low limit themselves.
            "ratelimit": {"api": "100000/minute", "scim": "100000/minute",
                          "failed_auth": "100000/minute", "storage": "memory"}}


@pytest.fixture(scope="session")
def app(database_url: str) -> Flask:
    """The application, built once per worker."""
    return create_app(app_overrides(database_url))


@pytest.fixture(scope="session")
def db(app: Flask) -> Database:
    """The app's database handle."""
    return app.extensions["roster.db"]


@pytest.fixture(autouse=True)
def _clean_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    """Empty every table after each test that used the database."""
    uses_db = "db" in request.fixturenames or "app" in request.fixturenames
    database: Database | None = request.getfixturevalue("db") if uses_db else None
    yield
    if database is None:
        return
    if "app" in request.fixturenames:
        # Write what the SCIM flight recorder buffered before its directories are deleted.
        flush_recorder(request.getfixturevalue("app"))
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with database.engine.begin() as conn:
        if database.dialect == "postgresql":
            # The audit log's tables refuse TRUNCATE (migration 0034): triggers do not fire
            # for a replica session (the test server's user is a superuser).
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
            conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            # Nested units reference their parent ON DELETE RESTRICT: delete children first.
            conn.execute(sa.text("UPDATE units SET parent_id = NULL"))
            for table in tables:
                conn.execute(sa.text(f"DELETE FROM {table}"))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app."""
    return app.test_client()


@dataclass
class Tenant:
    """An organization with one directory and one valid SCIM token."""

    org: Organization
    directory: Directory
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header for SCIM requests."""
        return {"Authorization": f"Bearer {self.token}"}


def make_tenant(db: Database, slug: str, vendor: str = "okta") -> Tenant:
    """Create an organization, a directory and a token in one transaction."""
    with db.transaction() as session:
        org = create_organization(session, slug, slug.title(), CATALOG, OPERATOR)
        directory = create_directory(session, org, vendor, vendor, OPERATOR)
        _, token = issue_token(session, directory, OPERATOR, days=30, max_valid=2)
    return Tenant(org=org, directory=directory, token=token)


@pytest.fixture
def tenant(db: Database) -> Tenant:
    """The default tenant, ``acme``."""
    return make_tenant(db, "acme")


@pytest.fixture
def other_tenant(db: Database) -> Tenant:
    """A second tenant, ``globex``, for isolation tests."""
    return make_tenant(db, "globex", "entra")


@pytest.fixture
def fresh_url(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> str:
    """An empty, unmigrated database for migration and CLI tests."""
    return fresh_database_url(tmp_path_factory, f"t{abs(hash(request.node.nodeid)) % 10**8}")


@contextmanager
def database_locked(app: Flask, db: Database,
                    tables: tuple[str, ...] = ("audit_chain_heads",)) -> Iterator[None]:
    """Inside the block, the app's writes time out quickly on a lock another connection holds:
    SQLite's write lock, or on PostgreSQL an exclusive lock on ``tables``."""
    held: list[object] = []
    release = threading.Event()
    if db.dialect == "sqlite":
        impatient = Database(db.url, busy_timeout_ms=50)
        blocker = db.engine.connect()
        held.append(blocker.begin())  # the engine begins SQLite transactions IMMEDIATE
    else:
        impatient = Database(db.url + ("&" if "?" in db.url else "?")
                             + "options=-c%20lock_timeout%3D100")
        ready = threading.Event()

        def hold() -> None:
            with db.engine.begin() as conn:
                conn.execute(sa.text(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE"))
                ready.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        ready.wait(10)
    original = app.extensions["roster.db"]
    app.extensions["roster.db"] = impatient
    try:
        yield
    finally:
        app.extensions["roster.db"] = original
        impatient.dispose()
        if db.dialect == "sqlite":
            held[0].rollback()  # type: ignore[attr-defined]
            blocker.close()
        else:
            release.set()
            holder.join()


def rows(db: Database, query: str, **params: object) -> list[sa.Row]:
    """Run a raw SELECT and return its rows (tests assert on the stored rows)."""
    with db.engine.connect() as conn:
        return list(conn.execute(sa.text(query), params))


__all__ = ["OPERATOR", "Path", "Tenant", "database_locked", "make_tenant", "rows"]


def roster_cli(database_url: str):
    """`roster ARGS...` run in-process against ``database_url``: the result, after asserting
    the exit code (0 unless ``ok=False``) and that no traceback was printed."""
    from click.testing import CliRunner

    from app.cli import cli

    runner = CliRunner()

    def _run(*args: str, ok: bool = True):
        result = runner.invoke(cli, list(args), env={"ROSTER_DATABASE__URL": database_url},
                               catch_exceptions=False)
        assert (result.exit_code == 0) == ok, result.output
        assert "Traceback" not in result.output
        return result

    return _run
