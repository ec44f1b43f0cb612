"""Webhook fan-out on PostgreSQL moves by the pull feed's transaction-id windows: a transaction
left open holds back only its own events (and costs no rescans), and an event whose id was
taken before its transaction had an xid is fanned out, once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db import utcnow
from app.events import emit
from app.events.delivery import WebhookConfig, fan_out
from app.events.feed import FeedPosition, events_after
from tests.conftest import rows

HOOK = "http://127.0.0.1:9/hook"
CONFIG = WebhookConfig(urls=(HOOK,), secret="s3cret-for-tests")
# Outbox rows read so far (sequential scans and index fetches; counts the session has not
# reported yet are included, so a transaction's reads are a difference within it). The
# measured transactions turn sequential scans off, as the planner does by itself on a big
# outbox: a few hundred rows are cheaper to read whole.
_INDEXES = sa.text("SET LOCAL enable_seqscan = off")
_READ = sa.text("SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
                "WHERE relname = 'outbox_events'")


@pytest.fixture(autouse=True)
def _postgresql_only(db):
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: its ids become visible in id order")


def _emit(session: Session, tenant, name: str) -> None:
    emit(session, organization_id=tenant.org.id, type="test.event", aggregate_id=name,
         payload={"name": name})


@contextmanager
def _idle_in_transaction(db, tenant) -> Iterator[sa.Connection]:
    """A transaction that wrote an event and then sits idle (a stuck client), until the
    block ends; the caller may commit it."""
    with db.engine.connect() as conn:
        tx = conn.begin()
        with Session(bind=conn) as session:
            _emit(session, tenant, "idle")
            session.flush()
        yield conn
        if tx.is_active:
            tx.commit()


def _analyze(db) -> None:
    """Planner statistics of the outbox as it now is, as autovacuum keeps them on a live
    database: its runs (every minute) otherwise decide whether the measured round is
    planned for an empty outbox or a full one, and a plan for an empty one walks the
    primary key (a full rescan of a few hundred rows seen once in a loaded suite run)."""
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE outbox_events")


def _fan_out(db) -> int:
    """One fan-out round; returns the outbox rows it read."""
    with db.transaction() as session:
        session.execute(_INDEXES)
        before = session.scalar(_READ) or 0
        fan_out(session, CONFIG, utcnow())
        return (session.scalar(_READ) or 0) - before


def _fanned_out(db) -> list[str]:
    return [r.aggregate_id for r in rows(
        db, "SELECT o.aggregate_id FROM webhook_deliveries d JOIN outbox_events o "
            "ON o.id = d.outbox_id WHERE d.endpoint = :e ORDER BY d.id", e=HOOK)]


def test_an_idle_transaction_makes_the_fan_out_neither_stall_nor_rescan(db, tenant):
    """A session left idle in transaction held the fan-out cursor below its event: every
    round read the outbox again from there, a growing range (hours of events). A round now
    reads what is new, and the idle transaction's event follows once it commits, once."""
    with _idle_in_transaction(db, tenant) as idle:
        with db.transaction() as session:
            for i in range(300):
                _emit(session, tenant, f"e{i}")
        _fan_out(db)
        _fan_out(db)
        with db.transaction() as session:
            _emit(session, tenant, "late")
        _analyze(db)
        read = _fan_out(db)
        assert read < 30, f"a round read {read} outbox rows for one new event"
        assert _fanned_out(db) == [f"e{i}" for i in range(300)] + ["late"]
        idle.commit()
    _fan_out(db)
    _fan_out(db)
    assert _fanned_out(db) == [f"e{i}" for i in range(300)] + ["late", "idle"]


def test_an_idle_transaction_makes_the_feed_rescan_nothing(db, tenant):
    """The pull feed's windows started at the oldest open transaction's txid: every poll read
    every event written since a session went idle in transaction. A poll now reads what is
    new (the windows are shared with the fan-out)."""
    with _idle_in_transaction(db, tenant):
        with db.transaction() as session:
            for i in range(300):
                _emit(session, tenant, f"e{i}")
        position = FeedPosition()
        with db.transaction() as session:
            while True:
                items, position = events_after(session, position, limit=1000)
                if not items:
                    break
        with db.transaction() as session:
            _emit(session, tenant, "late")
        _analyze(db)
        with db.transaction() as session:
            session.execute(_INDEXES)
            before = session.scalar(_READ) or 0
            items, position = events_after(session, position, limit=1000)
            read = (session.scalar(_READ) or 0) - before
    assert [e["data"]["name"] for e in items] == ["late"]
    assert read < 30, f"a poll read {read} outbox rows for one new event"


def test_an_event_whose_id_came_before_its_xid_is_fanned_out(db, tenant):
    """An outbox INSERT takes its id (nextval) before its transaction has an xid when it is
    the transaction's first write: a later id could commit, the cursor pass both, and the
    first event then commit below the cursor, never fanned out. Here the id is taken first,
    a later event commits and is fanned out, and only then is the first row written."""
    with db.engine.connect() as conn:  # nextval, and no transaction id yet anywhere
        early = conn.scalar(sa.text("SELECT nextval('outbox_events_id_seq')"))
        conn.commit()
    with db.transaction() as session:
        _emit(session, tenant, "later")
    for _ in range(3):
        _fan_out(db)
    with db.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO outbox_events (id, event_id, organization_id, type, aggregate_id, "
            "payload, created_at) VALUES (:id, 'early-event', :org, 'test.event', 'early', "
            "CAST('{}' AS jsonb), now())"), {"id": early, "org": tenant.org.id})
    _fan_out(db)
    _fan_out(db)
    assert _fanned_out(db) == ["later", "early"]


def test_concurrent_writers_and_fan_out_rounds_fan_each_event_out_once(db, tenant):
    """Writers commit in any order while fan-out rounds run: every event gets exactly one
    delivery, none is left behind."""
    import threading

    names = [f"w{i}" for i in range(80)]
    stop = threading.Event()

    def write(chunk: list[str]) -> None:
        for name in chunk:
            with db.transaction() as session:
                _emit(session, tenant, name)

    def rounds() -> None:
        while not stop.is_set():
            _fan_out(db)

    fanning = threading.Thread(target=rounds)
    fanning.start()
    writers = [threading.Thread(target=write, args=(names[i::4],)) for i in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
    stop.set()
    fanning.join(60)
    _fan_out(db)
    fanned = _fanned_out(db)
    assert sorted(fanned) == sorted(names)
