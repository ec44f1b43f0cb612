"""A sign-in refusal page shows only a correlation id whose trace is stored.

Refusals the client did not cause share one trace per connection and reason per interval
(app/sso/fault_traces.py): the first writes it, the others show its id. When that write
failed (a busy or failing database), the refusals that had come meanwhile had already shown
its id, which named nothing: the admin looking up the id an employee quoted found no trace.
Now such a refusal shows the id once the write committed, and writes its own trace when the
write failed.

The write is held up by a lock another connection holds (PostgreSQL: the traces table,
the waiting write then cancelled; SQLite: the single write lock, the write giving up at
the busy timeout)."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from app.db import Database
from app.models.sso import SsoConnection
from tests.conftest import rows
from tests.lockwait import started
from tests.sso.oidc_idp import oidc_connection
from tests.threads import background


@contextmanager
def trace_writes_held(db: Database) -> Iterator[Callable[[threading.Thread], None]]:
    """Inside the block, a trace write waits for a lock; the function yielded makes the
    write of the given request fail (and waits for that request to finish)."""
    blocker = db.engine.connect()
    blocker.begin()
    if db.dialect != "sqlite":
        blocker.execute(sa.text("LOCK TABLE sso_login_traces IN ACCESS EXCLUSIVE MODE"))

    def fail(thread: threading.Thread) -> None:
        if db.dialect != "sqlite":
            rows(db, "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE "
                     "datname = current_database() AND wait_event_type = 'Lock'")
        thread.join(30)  # SQLite: the write gives up at the busy timeout (5 s)

    try:
        yield fail
    finally:
        blocker.rollback()
        blocker.close()


def _shown_id(resp) -> str | None:
    found = re.search(r"id=correlation-id>([^<]+)<", resp.text)
    return found.group(1) if found else None


def test_a_refusal_never_shows_the_id_of_a_trace_whose_write_failed(db, tenant, hostile,
                                                                     sso_app):
    """Two logins through a disabled connection: the first claims the trace and its write
    waits for a lock; the second comes meanwhile; then the first's write fails. The second
    is refused with the id of a trace that exists (its own). Before: it showed the first's
    id, which no trace has."""
    conn = oidc_connection(db, tenant, hostile)
    with db.transaction() as s:
        s.get(SsoConnection, conn.id).enabled = False
    login = f"/sso/oidc/{conn.id}/login"
    with trace_writes_held(db) as fail_write:
        first, first_out = started(db, lambda: sso_app.test_client().get(login))
        second, second_out = background(lambda: sso_app.test_client().get(login),
                                        start=True)
        second.join(0.5)  # the second refusal has claimed its id (the first's)
        fail_write(first)
    second.join(30)
    assert not first.is_alive()
    assert not second.is_alive()
    stored = {t.id for t in rows(db, "SELECT id FROM sso_login_traces")}
    first_resp, second_resp = first_out["result"], second_out["result"]
    assert first_resp.status_code != 403, first_resp.text  # its write failed
    assert _shown_id(first_resp) not in stored
    assert second_resp.status_code == 403, second_resp.text
    assert _shown_id(second_resp) in stored
    assert [t.reason for t in rows(db, "SELECT reason FROM sso_login_traces")] == \
        ["connection_disabled"]


def test_the_untraced_repeats_survive_a_trace_write_that_failed(db, tenant, hostile, sso_app,
                                                                 monkeypatch):
    """Three refusals through a disabled connection: one trace, two repeats untraced. The
    first refusal after the interval carries their count, and its write fails: the next
    trace written carries it instead. Before, the count went with the failed write."""
    from app.sso import fault_traces

    conn = oidc_connection(db, tenant, hostile)
    with db.transaction() as s:
        s.get(SsoConnection, conn.id).enabled = False
    login = f"/sso/oidc/{conn.id}/login"
    shown = [_shown_id(sso_app.test_client().get(login)) for _ in range(3)]
    assert len(set(shown)) == 1
    monkeypatch.setattr(fault_traces, "TRACE_INTERVAL_SECONDS", 0.0)  # the interval is over
    with trace_writes_held(db) as fail_write:
        failed, _out = started(db, lambda: sso_app.test_client().get(login))
        fail_write(failed)
    assert not failed.is_alive()
    later = _shown_id(sso_app.test_client().get(login))
    traces = rows(db, "SELECT id, payload FROM sso_login_traces ORDER BY created_at")
    assert [t.id for t in traces] == [shown[0], later]
    payload = traces[1].payload if isinstance(traces[1].payload, dict) \
        else json.loads(traces[1].payload)
    assert payload["untraced_repeats"] == {"count": 2, "correlation_id": shown[0]}
