"""GET /api/v1/audit across organizations: a cursor never passes a record committed later."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from app.audit.log import SYSTEM, append_pending, record
from tests.api.conftest import make_key
from tests.conftest import rows
from tests.lockwait import started
from tests.threads import background


def _record(db, org_id: str, name: str, written: threading.Event | None = None,
            release: threading.Event | None = None) -> None:
    """One audit record in its own transaction; with ``release``, it is appended (its id
    taken, its chain head locked) and the commit waits for ``release``."""
    with db.transaction() as session:
        record(session, organization_id=org_id, action=f"test:{name}", actor=SYSTEM,
               subject_type="test", subject_id=name)
        if release is not None:
            append_pending(session)  # what the commit does first: the INSERT
            written.set()
            assert release.wait(30)


def _page(client, headers, cursor=None) -> dict:
    url = "/api/v1/audit?action=test:*&limit=1" + (f"&cursor={cursor}" if cursor else "")
    response = client.get(url, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@contextmanager
def committing(db, org_id: str, name: str = "slow") -> Iterator[None]:
    """Within the block, ``org_id``'s record ``name`` has its id and is still committing
    (PostgreSQL); SQLite commits one writer at a time, so there it is committed first."""
    written, release = threading.Event(), threading.Event()
    racing = db.dialect == "postgresql"
    slow = threading.Thread(target=_record, args=(
        db, org_id, name, written, release if racing else None))
    slow.start()
    try:
        if racing:
            assert written.wait(30)
        else:
            slow.join(30)
        yield
    finally:
        release.set()
        slow.join(30)


def read_racing_a_slow_commit(db, reader, slow_org: str, other_org: str):
    """``reader()`` across organizations while ``slow_org``'s record (the lower id) is still
    committing and ``other_org``'s "fast" (a higher id) is committed (``committing``);
    ``other_org`` appends "later" while the reader waits. The reader's result, or the
    exception it raised."""
    with committing(db, slow_org):
        _record(db, other_org, "fast")  # a higher id, committed first
        if db.dialect == "postgresql":
            thread, outcome = background(reader, start=True)
            _polling(db)  # the reader waits for the slow commit...
        else:
            thread, outcome = started(db, reader)
        # ...holding no lock: another organization appends meanwhile (a first version
        # queued a SHARE lock, every appender waited behind it, and the page gave up: 503).
        _record(db, other_org, "later")
    thread.join(30)
    return outcome["result"]


def test_a_record_committed_after_a_later_one_is_not_skipped(client, db, tenant, other_tenant):
    """PostgreSQL takes ids at INSERT and shows rows at COMMIT. The operator's list paged by
    id handed out a cursor after globex's record n+1 while acme's n was still committing,
    and n, committed next, was never listed. The page now waits for such a commit; every
    record comes, in id order, on both databases."""
    operator = make_key(db, "operator")
    reader = client.application.test_client()
    first = read_racing_a_slow_commit(db, lambda: _page(reader, operator.headers),
                                      tenant.org.id, other_tenant.org.id)
    assert not isinstance(first, BaseException), first
    seen, cursor = [e["action"] for e in first["items"]], first["next_cursor"]
    while cursor:
        page = _page(client, operator.headers, cursor)
        seen += [e["action"] for e in page["items"]]
        cursor = page["next_cursor"]
    assert seen == ["test:slow", "test:fast", "test:later"]


def _polling(db) -> None:
    """Return once a session polls for the appenders to end (app/audit/horizon.py)."""
    deadline = time.monotonic() + 30
    while not rows(db, "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                       " AND query LIKE '%locktype = ''virtualxid''%'")[0][0]:
        assert time.monotonic() < deadline, "the page never waited for the appenders"
        time.sleep(0.01)


def test_an_organization_list_does_not_wait_for_another_organization(client, db, tenant,
                                                                     other_tenant):
    """Reading one organization needs no wait: its records commit in id order. A record of
    another organization still committing does not hold its list up."""
    auditor = make_key(db, "auditor", other_tenant.org)
    _record(db, other_tenant.org.id, "fast")
    with committing(db, tenant.org.id):
        page = _page(client, auditor.headers)  # would hang here if it waited
    assert [e["action"] for e in page["items"]] == ["test:fast"]


def test_a_stuck_commit_is_a_503_to_retry_not_a_skip(client, db, tenant, other_tenant):
    """A record whose commit does not finish holds the operator's page back for
    SETTLE_SECONDS at the most: then a 503 with Retry-After (retry; nothing skipped); the
    other organizations' appends go on meanwhile."""
    if db.dialect != "postgresql":
        pytest.skip("PostgreSQL: on SQLite a commit in progress holds the single writer")
    operator = make_key(db, "operator")
    with committing(db, tenant.org.id):
        response = client.get("/api/v1/audit?action=test:*", headers=operator.headers)
        _record(db, other_tenant.org.id, "fast")  # not held up once the page gave up
    assert response.status_code == 503, response.get_json()
    assert response.headers["Retry-After"]
    assert response.get_json()["status"] == 503
    assert [e["action"] for e in _page(client, operator.headers)["items"]] == ["test:slow"]
