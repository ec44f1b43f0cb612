"""Leases per key: one credential's slow lease write never stalls another credential, and
concurrent requests over two processes never pass the shared limit."""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time

from limits import parse

from app import create_app
from app.api.leases import LEASE_FRACTION, LeasedLimiter
from app.api.ratelimit import DatabaseStorage
from app.bearer import digest_of
from app.db import Database
from tests.conftest import app_overrides, rows
from tests.lockwait import held
from tests.threads import background


def _node(database_url: str, **limits: object):
    overrides = app_overrides(database_url)
    overrides["ratelimit"] = {"api": "100000/minute", "scim": "100000/minute",
                              "storage": "database", **limits}
    # A lease write held up by the test's open transaction waits for it, not a timeout.
    overrides["database"]["sqlite_busy_timeout_ms"] = 120_000
    overrides["mapping"] = {"write_wait_ms": 120_000}
    return create_app(overrides)


def _until_in(thread: threading.Thread, function: str) -> bool:
    """Wait until ``thread`` runs ``function`` (somewhere on its stack); False if it ended
    or 30 s passed first."""
    for _ in range(3000):
        frame = sys._current_frames().get(thread.ident or 0)
        while frame is not None:
            if frame.f_code.co_name == function:
                return True
            frame = frame.f_back
        if not thread.is_alive():
            return False
        time.sleep(0.01)
    return False


def test_a_held_up_lease_write_of_one_key_does_not_stall_another_key(database_url, db, keys,
                                                                      tenant):
    """The admin key's lease upsert waits for a write transaction another connection holds
    open (SQLite's write lock; PostgreSQL's lock on its counter row); meanwhile the auditor
    key, served from its own lease, gets its answer. With one process-wide lock held across
    the upsert, the auditor's request waited for the admin's."""
    app = _node(database_url, api="40/minute")  # a lease is 2 requests
    url = f"/api/v1/orgs/{tenant.org.id}"
    admin, auditor = keys["admin"], keys["auditor"]
    client = app.test_client()
    for _ in range(2):  # the admin's lease is spent: its next request writes the counter
        assert client.get(url, headers=admin.headers).status_code == 200
    assert client.get(url, headers=auditor.headers).status_code == 200  # one left here
    with held(db, "UPDATE rate_limit_counters SET count = count WHERE key LIKE :key",
              key=f"%{digest_of(admin.plaintext)}%"):
        slow, slow_outcome = background(
            lambda: app.test_client().get(url, headers=admin.headers).status_code, start=True)
        assert _until_in(slow, "_upsert"), slow_outcome  # the admin's lease write waits
        other, other_outcome = background(
            lambda: app.test_client().get(url, headers=auditor.headers).status_code,
            start=True)
        other.join(30)
        answered_while_held = not other.is_alive()
        admin_still_waiting = slow.is_alive()
    slow.join(60)
    other.join(60)
    assert answered_while_held, "the auditor key waited for the admin key's lease write"
    assert admin_still_waiting, slow_outcome
    assert other_outcome["result"] == 200
    assert slow_outcome["result"] == 200
    counts = dict(rows(db, "SELECT key, count FROM rate_limit_counters"))
    assert sorted(counts.values()) == [2, 4]


def _spend(database_url: str, limit: str, threads: int, rounds: int) -> int:
    """One process's share of the race: ``threads`` threads, each alternating single
    requests and charges of 3 (a SCIM Bulk), on one limiter; the requests it granted."""
    db = Database(database_url, busy_timeout_ms=120_000)
    limiter = LeasedLimiter(DatabaseStorage(db))
    item = parse(limit)
    granted: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait()
        mine = 0
        for n in range(rounds):
            cost = 3 if n % 2 else 1
            if limiter.check(item, "LIMITER/race", cost) is None:
                mine += cost
        with lock:
            granted.append(mine)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert limiter.key_locks == {}
    db.dispose()
    return sum(granted)


def test_two_processes_of_racing_threads_never_pass_the_shared_limit(database_url, db):
    """Two OS processes, four threads each, single requests and Bulk charges of one key:
    together they are granted at most the limit, and at most one slice per process less
    (an unused lease), and the shared counter has counted every request granted."""
    limit, amount = "60/minute", 60
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        granted = pool.starmap(_spend, [(database_url, limit, 4, 20)] * 2)
    total = sum(granted)
    assert amount - 2 * (amount // LEASE_FRACTION) <= total <= amount, granted
    assert rows(db, "SELECT count FROM rate_limit_counters")[0][0] >= total
