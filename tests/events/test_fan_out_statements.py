"""The worker's read-only check for fan-out work (``fan_out_due``, every round of every
worker) costs a constant number of statements whatever the number of webhook URLs; before,
two or three per URL (the purge marks after its cursor's epoch, then whether anything lies
after its cursor)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from app.events.delivery import WebhookConfig, fan_out_due
from tests.events.retention_support import age, fan_out_to, purge, set_status, write

URLS = tuple(f"http://127.0.0.1:9/hook-{n}" for n in range(8))


def _statements(db, urls: tuple[str, ...]) -> tuple[bool, list[str]]:
    seen: list[str] = []
    me = threading.get_ident()

    def _count(_conn, _cursor, statement, *_args) -> None:
        # This thread's only: a background writer of the shared engine (another app's flight
        # recorder flush) once added 4 statements to a full run's count. The texts are kept
        # so that a count that differs says which statement it was (a full PostgreSQL run
        # once counted one more for one of the two calls).
        if threading.get_ident() == me:
            seen.append(" ".join(statement.split())[:200])

    sa.event.listen(db.engine, "before_cursor_execute", _count)
    try:
        with db.transaction(readonly=True) as session:
            due = fan_out_due(session, WebhookConfig(urls=urls, secret="s3cret-for-tests"))
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", _count)
    return due, seen


@pytest.fixture
def old_transaction(db) -> Iterator[None]:
    """A transaction of another client, open with a transaction id from before the events
    are written to after the checks (PostgreSQL): every snapshot lists it in progress, so
    checking a cursor against the purge marks reads the purged transaction ids."""
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL: transaction ids and snapshots")
    with db.engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_current_xact_id()"))
        yield
        conn.rollback()


def test_the_fan_out_check_costs_the_same_for_one_url_and_for_eight(db, tenant):
    _check_costs_the_same(db, tenant)


def test_the_fan_out_check_costs_the_same_beside_an_old_transaction(db, tenant,
                                                                    old_transaction):
    """With a transaction open since before the purged events (another test's, in a full
    parallel run), each cursor's check read the purged transaction ids anew: 8 URLs cost
    up to 7 statements more than one (the count failed twice in full PostgreSQL runs).
    They are read once per epoch and cluster."""
    _check_costs_the_same(db, tenant)


def _check_costs_the_same(db, tenant) -> None:
    written = write(db, tenant, "one", "two", "three")
    fan_out_to(db, *URLS)
    set_status(db, "delivered", *written)
    age(db)
    assert purge(db, *URLS).events == 2  # a mark after every cursor's epoch: checked
    due_one, one = _statements(db, URLS[:1])
    due_eight, eight = _statements(db, URLS)
    assert (due_one, due_eight) == (False, False)
    assert len(eight) == len(one), (one, eight)
    write(db, tenant, "four")
    due_one, one = _statements(db, URLS[:1])
    due_eight, eight = _statements(db, URLS)
    assert (due_one, due_eight) == (True, True)
    assert len(eight) == len(one), (one, eight)
    print(f"fan_out_due: {len(one)} statements for 1 URL, {len(eight)} for {len(URLS)}")  # -s
