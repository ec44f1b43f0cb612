"""GET /api/v1/deprovisions: a cursor never passes a record committed after it was handed out."""

from __future__ import annotations

import threading
from datetime import timedelta

from app.audit import Actor
from app.db import utcnow
from app.lifecycle.users import Trigger, deprovision_user
from app.models import User
from tests.api.conftest import make_key
from tests.lifecycle.support import add_user


def _deprovision(db, user_id: str, received_at=None, flushed: threading.Event | None = None,
                 release: threading.Event | None = None) -> None:
    """Deprovision one user in its own transaction, received at ``received_at``; with
    ``release``, the transaction has done its work and waits for ``release`` to commit."""
    actor = Actor(type="operator", id="security", received_at=received_at or utcnow())
    with db.transaction() as session:
        deprovision_user(session, session.get(User, user_id), actor, trigger=Trigger.operator)
        session.flush()
        if release is not None:
            flushed.set()
            assert release.wait(30)


def _read_to_the_end(client, headers, cursor: str | None) -> tuple[list[str], str | None]:
    """Page on from ``cursor`` with limit=1; the user names read and the last cursor given
    (a poller keeps it: the last page's next_cursor is null)."""
    names: list[str] = []
    while True:
        url = "/api/v1/deprovisions?limit=1" + (f"&cursor={cursor}" if cursor else "")
        response = client.get(url, headers=headers)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        names += [item["user_name"] for item in body["items"]]
        if body["next_cursor"] is None:
            return names, cursor
        cursor = body["next_cursor"]


def _everything_read(client, headers, first: list[str], cursor: str | None) -> set[str]:
    more, _ = _read_to_the_end(client, headers, cursor)
    return set(first) | set(more)


def test_a_record_received_earlier_and_committed_later_is_not_skipped(client, db, tenant):
    """A deprovisioning received before others but committed after them (it waited for a
    lock, a slow IdP request) had an earlier received_at than the cursor a security team
    already held: paging on from that cursor never showed it. Pages follow the commit
    order now: a poller that keeps its last cursor reads every record."""
    auditor = make_key(db, "auditor", tenant.org)
    early = add_user(db, tenant, "early")
    received_early = utcnow() - timedelta(seconds=5)
    for name in ("first", "second"):
        _deprovision(db, add_user(db, tenant, name))
    seen, cursor = _read_to_the_end(client, auditor.headers, None)
    assert seen == ["first", "second"]
    _deprovision(db, early, received_at=received_early)
    assert _everything_read(client, auditor.headers, seen, cursor) == {
        "first", "second", "early"}


def test_a_deprovisioning_transaction_committing_late_is_not_skipped(client, db, tenant):
    """PostgreSQL, a real concurrent transaction: a long deprovisioning (received first)
    is still open while two later ones commit and the security team pages past them; once
    it commits, paging on from the cursor held shows it. On SQLite the open transaction
    holds the only writer, so the later ones commit after it."""
    auditor = make_key(db, "auditor", tenant.org)
    slow = add_user(db, tenant, "slow")
    fast = [add_user(db, tenant, name) for name in ("fast-1", "fast-2")]
    flushed, release = threading.Event(), threading.Event()
    racing = db.dialect == "postgresql"
    thread = threading.Thread(target=_deprovision, args=(
        db, slow, None, flushed, release if racing else None))
    thread.start()
    try:
        if racing:
            assert flushed.wait(30)
        else:
            thread.join(30)
        for user_id in fast:
            _deprovision(db, user_id)
        seen, cursor = _read_to_the_end(client, auditor.headers, None)
    finally:
        release.set()
        thread.join(30)
    assert _everything_read(client, auditor.headers, seen, cursor) == {
        "slow", "fast-1", "fast-2"}


def test_an_operator_across_organizations_skips_nothing(client, db, tenant, other_tenant):
    """Across organizations (an operator key), records received earlier and committed
    later in another organization are read too."""
    operator = make_key(db, "operator")
    early = add_user(db, tenant, "early")
    received_early = utcnow() - timedelta(seconds=5)
    _deprovision(db, add_user(db, other_tenant, "first"))
    _deprovision(db, add_user(db, tenant, "second"))
    seen, cursor = _read_to_the_end(client, operator.headers, None)
    _deprovision(db, early, received_at=received_early)
    assert _everything_read(client, operator.headers, seen, cursor) == {
        "first", "second", "early"}
