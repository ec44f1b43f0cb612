"""Migration 0034: on PostgreSQL the audit log's tables refuse ``TRUNCATE`` and checkpoints
refuse UPDATE and DELETE (triggers); the downgrade drops them and 0004's trigger stays;
SQLite gets no triggers either way."""

from __future__ import annotations

import sqlalchemy as sa

from app.db import Database
from app.migrate import current_revision, downgrade, head_revision, upgrade
from tests.conftest import make_tenant

OURS = {("audit_events", "audit_events_no_truncate"),
        ("audit_chain_heads", "audit_chain_heads_no_truncate"),
        ("audit_checkpoints", "audit_checkpoints_no_truncate"),
        ("audit_checkpoints", "audit_checkpoints_append_only")}
BEFORE = {("audit_events", "audit_events_append_only")}  # 0004's


def _triggers(url: str) -> tuple[str | None, set[tuple[str, str]]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                found = conn.execute(sa.text(
                    "SELECT tbl_name, name FROM sqlite_master WHERE type = 'trigger'"))
            else:
                found = conn.execute(sa.text(
                    "SELECT tgrelid::regclass::text, tgname FROM pg_trigger "
                    "WHERE NOT tgisinternal"))
            return current_revision(engine), {tuple(row) for row in found}
    finally:
        engine.dispose()


def _try(url: str, statement: str) -> str | None:
    """None when the statement ran (and was rolled back), else the database's message."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            try:
                with conn.begin() as transaction:
                    conn.execute(sa.text(statement))
                    transaction.rollback()
            except sa.exc.DBAPIError as exc:
                return str(exc.orig)
        return None
    finally:
        engine.dispose()


def _checkpoint(url: str, chain: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO audit_checkpoints (id, chain, seq, hash, created_at, key_id, "
                "signature) VALUES ('cp1', :c, 1, :h, CURRENT_TIMESTAMP, 'k', 's')"),
                {"c": chain, "h": "0" * 64})
    finally:
        engine.dispose()


STATEMENTS = ["TRUNCATE audit_events", "TRUNCATE audit_chain_heads",
              "TRUNCATE audit_checkpoints", "UPDATE audit_checkpoints SET key_id = 'x'",
              "DELETE FROM audit_checkpoints"]


def test_0034_guards_the_log_on_postgresql_and_its_downgrade_drops_the_guards(fresh_url,
                                                                             dialect):
    """Up from 0033 with a log in place: the four triggers (PostgreSQL) refuse every
    statement, each naming its table; down to 0033: only 0004's trigger, every statement
    runs; up again: refused again. SQLite: no trigger at any step."""
    upgrade(fresh_url, "0033")
    database = Database(fresh_url)
    try:
        org_id = make_tenant(database, "acme").org.id
    finally:
        database.dispose()
    _checkpoint(fresh_url, org_id)
    if dialect == "sqlite":
        upgrade(fresh_url, "0034")
        assert _triggers(fresh_url) == ("0034", set())
        downgrade(fresh_url, "0033")
        assert _triggers(fresh_url) == ("0033", set())
        return
    assert _triggers(fresh_url) == ("0033", BEFORE)
    assert [_try(fresh_url, s) for s in STATEMENTS] == [None] * len(STATEMENTS)
    for _ in range(2):
        upgrade(fresh_url, "0034")
        assert _triggers(fresh_url) == ("0034", BEFORE | OURS)
        refused = [_try(fresh_url, s) for s in STATEMENTS]
        assert [message.splitlines()[0] if message else None for message in refused] == [
            "audit_events is append-only: TRUNCATE is not allowed",
            "audit_chain_heads belongs to the append-only audit log: TRUNCATE is not allowed",
            "audit_checkpoints is append-only: TRUNCATE is not allowed",
            "audit_checkpoints is append-only: UPDATE is not allowed",
            "audit_checkpoints is append-only: DELETE is not allowed"]
        downgrade(fresh_url, "0033")
        assert _triggers(fresh_url) == ("0033", BEFORE)
        assert [_try(fresh_url, s) for s in STATEMENTS] == [None] * len(STATEMENTS)


def test_a_downgrade_below_0004_runs_through_0034(fresh_url):
    """Down to 0003 (0004's trigger and the checkpoints' table dropped after 0034's
    triggers), then back to head."""
    upgrade(fresh_url)
    downgrade(fresh_url, "0003")
    assert _triggers(fresh_url)[0] == "0003"
    upgrade(fresh_url)
    assert _triggers(fresh_url)[0] == head_revision()
