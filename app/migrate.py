"""Alembic, driven programmatically so `roster db upgrade` and tests share one path."""

from __future__ import annotations

import functools
import logging

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from app.engine import SQLITE_WRITE
from app.log_throttle import EveryInterval
from app.settings import ROOT

log = logging.getLogger(__name__)
# What SCIM and /api answer (503, with Retry-After in seconds) while schema_not_ready holds.
NOT_READY_DETAIL = "the service is not ready: its database is being upgraded; retry later"
NOT_READY_RETRY_AFTER = "30"
# schema_not_ready logs once a minute (per process), not once per request.
NOT_READY_LOG = EveryInterval(60.0)


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at migrations/ and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision``; a new SQLite file gets planner statistics, and
    so does an index a migration adds (app.planner.seed_statistics), in the migrations'
    transaction (migrations/env.py)."""
    cfg = alembic_config(url)
    cfg.attributes["seed_statistics"] = True
    command.upgrade(cfg, revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Revert migrations down to ``revision``."""
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    """The newest revision in migrations/."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


@functools.cache
def code_head() -> str | None:
    """``head_revision`` of the running code, read once: migrations/ does not change under
    a running process (reading it parses every migration file)."""
    return head_revision()


@functools.cache
def code_revisions() -> frozenset[str]:
    """Every revision in this code's migrations/, read once."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return frozenset(revision.revision for revision in script.walk_revisions())


def newer_release(current: str | None) -> bool:
    """The database was migrated by a newer release: its revision is unknown to this code.
    In a rolling deploy the migration runs first and the old nodes serve on meanwhile."""
    return current is not None and current not in code_revisions()


def schema_problem(engine: Engine) -> str | None:
    """What keeps this code from the database's schema, in one line (None when the database
    is at this code's head): never migrated, behind (`roster db upgrade`), or migrated by a
    newer release."""
    return revision_problem(current_revision(engine))


def revision_problem(current: str | None, *, newer_ok: bool = False) -> str | None:
    """``schema_problem`` of a revision read already; ``newer_ok``: a newer release's
    revision is no problem (a process that serves on through a rolling deploy)."""
    head = code_head()
    if current == head or (newer_ok and newer_release(current)):
        return None
    if current is None:
        return "the database is not migrated: run `roster db upgrade`"
    if newer_release(current):
        return (f"the database schema is at revision {current} of a newer release (this "
                f"Roster knows up to {head}): run the newer release")
    return (f"the database schema is at revision {current}, this Roster needs {head}: "
            "run `roster db upgrade`")


def schema_not_ready(engine: Engine, exc: BaseException) -> bool:
    """Whether a database error ``exc`` comes from a schema that is not at this code's
    migration head (a table or column missing because `roster db upgrade` has not run yet,
    or ran for a newer release), rather than from a bug. Checked only once such an error
    happened; logs what to do (at most once a minute). /readyz reports the same state to a
    load balancer.
    """
    if not isinstance(exc, DBAPIError):
        return False
    try:
        current = current_revision(engine)
    except SQLAlchemyError:
        return False  # the database itself is the problem, not its schema
    head = code_head()
    if current == head:
        return False
    if not NOT_READY_LOG.due():
        return True
    if newer_release(current):
        log.error("the database schema is at revision %s of a newer release (this Roster "
                  "knows up to %s): replace this node with the new release", current, head)
    else:
        log.error("the database schema is at revision %s, this Roster needs %s: run "
                  "`roster db upgrade`; requests are answered 503 until then", current, head)
    return True


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None when never migrated). Read directly: an Alembic
    MigrationContext logs two INFO lines each time, and a load balancer probes /readyz every
    few seconds. On SQLite a plain BEGIN, not the writers' BEGIN IMMEDIATE: a probe queued
    behind a long write (a mass deprovisioning) for the busy timeout, then called the
    database unreachable and took the node out of the balancer."""
    token = SQLITE_WRITE.set(False)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        SQLITE_WRITE.reset(token)


def stored_revision(engine: Engine) -> str | None:
    """``current_revision`` in one statement where the database is migrated (the `roster`
    commands read it on every invocation): the SELECT alone, and only when it fails the
    look for the table (None: never migrated; any other error is raised again there)."""
    token = SQLITE_WRITE.set(False)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        pass  # no such table (never migrated), or the database cannot be read: see which
    finally:
        SQLITE_WRITE.reset(token)
    return current_revision(engine)
