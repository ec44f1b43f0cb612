"""The log line of a transient database error names what happened (audit F4)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from app.db_errors import describe_transient, is_transient
from tests.conftest import make_tenant


def test_a_deadlock_is_named_with_its_sqlstate_row_and_statement(db, dialect):
    """Two connections lock two rows in opposite orders: PostgreSQL aborts one with 40P01,
    and its description says "deadlock detected", the relation and the statement."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: it cannot deadlock")
    ids = [make_tenant(db, slug).org.id for slug in ("acme", "globex")]
    lock = sa.text("SELECT id FROM organizations WHERE id = :id FOR UPDATE")
    barrier = threading.Barrier(2)
    failures: list[DBAPIError] = []

    def lock_both(first: str, second: str) -> None:
        with db.engine.connect() as conn, conn.begin():
            conn.execute(lock, {"id": first})
            barrier.wait(10)
            try:
                conn.execute(lock, {"id": second})
            except DBAPIError as exc:
                failures.append(exc)

    threads = [threading.Thread(target=lock_both, args=order)
               for order in (ids, ids[::-1])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(failures) == 1
    [exc] = failures
    assert is_transient(exc)
    described = describe_transient(exc)
    assert described.startswith("deadlock detected (SQLSTATE 40P01)"), described
    assert 'relation "organizations"' in described
    assert "statement: SELECT id FROM organizations WHERE id = " in described


def test_other_errors_keep_their_type_name():
    """Not a database error: just the exception's type."""
    assert describe_transient(TimeoutError()) == "TimeoutError"


def test_a_full_disk_is_a_retryable_error(tmp_path):
    """SQLite's "database or disk is full" (here: max_page_count reached) is transient, so
    SCIM and the API answer 503 with Retry-After, not a 500 and a traceback per request."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'full.db'}")
    with engine.connect() as connection:
        connection.execute(sa.text("CREATE TABLE t (v TEXT)"))
        pages = connection.execute(sa.text("PRAGMA page_count")).scalar()
        connection.execute(sa.text(f"PRAGMA max_page_count = {pages}"))
        with pytest.raises(DBAPIError) as raised:
            connection.execute(sa.text("INSERT INTO t SELECT hex(randomblob(9000))"))
    assert "full" in str(raised.value.orig)
    assert is_transient(raised.value)
    engine.dispose()
