"""Two webhook workers (two nodes) claiming at once keep each user's events in order at
every URL (PostgreSQL: claims lock with SKIP LOCKED), and a worker whose lease ran out
leaves the next holder's lease alone.

A worker claims the due heads of (URL, user) runs, then the rest of each run (its
followers). The followers' statement locked every blocking delivery of the heads'
*users*, at every URL, up to the batch size: a worker holding a head at URL 2 held rows of
URL 1 for the length of its claim, and a worker claiming URL 1's head meanwhile skipped
them (SKIP LOCKED) and took the next one of the run: it sent a user's third event to URL 1
right after the first, the second later.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from app.db import Database, utcnow
from app.events.delivery import WebhookConfig, claim, record_result, release
from app.events.worker import run_once
from tests.conftest import rows
from tests.events.receiver import SECRET, Receiver, running_receiver
from tests.events.retention_support import fan_out_to, write
from tests.threads import background


@pytest.fixture
def postgres_only(dialect: str) -> None:
    if dialect != "postgresql":
        pytest.skip("row locks and several workers are PostgreSQL's (SQLite runs one)")


def _config(*urls: str) -> WebhookConfig:
    return WebhookConfig(urls=urls, secret=SECRET, timeout_seconds=5, retry_base_seconds=1,
                         retry_max_seconds=2, dead_after_seconds=3600, lease_seconds=30,
                         batch_size=2, poll_interval_ms=50)


@contextmanager
def _paused_at(engine: sa.Engine, nth: int, *, before: bool,
               reached: threading.Event, go_on: threading.Event) -> Iterator[None]:
    """The ``nth`` statement locking webhook deliveries that a thread runs on ``engine``
    (1: a claim's heads, 2: their followers) sets ``reached`` and waits for ``go_on``,
    before it runs (``before``) or after it ran."""
    seen: dict[int, int] = {}

    def hook(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM webhook_deliveries" not in statement or "FOR UPDATE" not in statement:
            return
        me = threading.get_ident()
        seen[me] = seen.get(me, 0) + 1
        if seen[me] == nth:
            reached.set()
            assert go_on.wait(30), "the other worker never went on"

    kind = "before_cursor_execute" if before else "after_cursor_execute"
    sa.event.listen(engine, kind, hook)
    try:
        yield
    finally:
        sa.event.remove(engine, kind, hook)


def _user_x(db: Database, receiver: Receiver) -> list[str]:
    """The names of user X's events one receiver got, in arrival order (no repeats)."""
    names = {r.event_id: (json.loads(r.payload) if isinstance(r.payload, str)
                          else r.payload)["name"]
             for r in rows(db, "SELECT event_id, payload FROM outbox_events")}
    return [names[e] for e in receiver.processed if names[e].startswith("X")]


@pytest.mark.usefixtures("postgres_only")
def test_a_worker_claiming_another_url_does_not_make_one_skip_an_event(db, tenant):
    """Users X and Y: X1 and Y1 fanned out to URLs 1 and 2, then X2, then X3, each fanned
    out in turn. Worker A claims the heads X1, Y1 at URL 1 and is held before its
    followers; worker B (another node) claims X1, Y1 at URL 2, whose followers' statement
    (batch size 2) passes X2 at both URLs; A then reads its followers. URL 1 gets X1, X2,
    X3 in that order (it got X1, X3, X2: A skipped X2, which B had locked, and took X3)."""
    with running_receiver() as one, running_receiver() as two:
        config = _config(one.url, two.url)
        write(db, tenant, "X1", aggregate="user-x")
        write(db, tenant, "Y1", aggregate="user-y")
        fan_out_to(db, one.url, two.url)
        for name in ("X2", "X3"):
            write(db, tenant, name, aggregate="user-x")
            fan_out_to(db, one.url, two.url)
        node_a, node_b = Database(db.url), Database(db.url)
        a_at_followers, b_claimed = threading.Event(), threading.Event()
        a_read_followers = threading.Event()
        try:
            with _paused_at(node_a.engine, 2, before=True, reached=a_at_followers,
                            go_on=b_claimed), \
                    _paused_at(node_a.engine, 2, before=False, reached=a_read_followers,
                               go_on=a_read_followers), \
                    _paused_at(node_b.engine, 2, before=False, reached=b_claimed,
                               go_on=a_read_followers):
                worker_a, a_done = background(lambda: run_once(node_a, config, "A"),
                                              start=True)
                assert a_at_followers.wait(30), a_done
                worker_b, b_done = background(lambda: run_once(node_b, config, "B"),
                                              start=True)
                worker_a.join(60)
                worker_b.join(60)
            assert not isinstance(a_done.get("result"), BaseException), a_done
            assert not isinstance(b_done.get("result"), BaseException), b_done
            for _ in range(50):
                if len(one.processed) == 4 and len(two.processed) == 4:
                    break
                run_once(node_a, replace(config, batch_size=50), "A")
        finally:
            node_a.dispose()
            node_b.dispose()
    assert _user_x(db, one) == ["X1", "X2", "X3"]
    assert _user_x(db, two) == ["X1", "X2", "X3"]


def _claim(db: Database, config: WebhookConfig, worker: str, now: datetime) -> list[int]:
    with db.transaction() as session:
        return [c.id for c in claim(session, config, worker, now)]


def _record(db: Database, config: WebhookConfig, delivery: int, worker: str, now: datetime,
            *, ok: bool) -> str:
    with db.transaction() as session:
        return record_result(session, config, delivery, worker_id=worker, ok=ok,
                             status=200 if ok else 500, error=None if ok else "HTTP 500",
                             now=now)


def _release(db: Database, deliveries: list[int], worker: str) -> None:
    with db.transaction() as session:
        release(session, deliveries, worker)


def _lease(db: Database, delivery: int) -> tuple[str | None, str]:
    found = rows(db, "SELECT leased_by, status FROM webhook_deliveries WHERE id = :i",
                 i=delivery)[0]
    return found.leased_by, found.status


@pytest.mark.parametrize("late", ["failure", "release"])
def test_a_result_recorded_after_the_lease_ran_out_leaves_the_new_lease_alone(db, tenant,
                                                                              late):
    """Worker A claims X1 (user X) and Y1 (user Y); its lease runs out before it writes its
    outcome (X1's POST failed; Y1 given back unsent, past its time), and worker B (another
    node) has claimed both again and is posting them. A's late write must not clear B's
    leases: it did, and a third worker took X1 (once its retry was due) or Y1 and sent it
    while B was sending it too."""
    config = _config("http://127.0.0.1:9/hook")
    write(db, tenant, "X1", aggregate="user-x")
    write(db, tenant, "Y1", aggregate="user-y")
    fan_out_to(db, *config.urls)
    start = utcnow()
    x1, y1 = _claim(db, config, "A", start)
    expired = start + timedelta(seconds=config.lease_seconds + 1)
    assert _claim(db, config, "B", expired) == [x1, y1]
    if late == "failure":
        _record(db, config, x1, "A", expired, ok=False)
    else:
        _release(db, [y1], "A")
    assert _lease(db, x1) == ("B", "pending")
    assert _lease(db, y1) == ("B", "pending")
    retry_due = expired + timedelta(seconds=config.retry_max_seconds + 1)
    assert _claim(db, config, "C", retry_due) == [], "B holds both"
    assert _record(db, config, x1, "B", retry_due, ok=True) == "delivered"
    assert _record(db, config, y1, "B", retry_due, ok=True) == "delivered"
