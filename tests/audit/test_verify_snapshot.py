"""`roster audit verify` and a receipt on a live PostgreSQL deployment: what commits while
they read does not make an untouched log or record look tampered with."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.api.conftest import make_key
from tests.lifecycle.support import make_leaver, roster

pytestmark = pytest.mark.usefixtures("_postgresql_only")


@pytest.fixture
def _postgresql_only(dialect):
    if dialect != "postgresql":
        pytest.skip("SQLite: the check holds the one writer's lock, nothing commits meanwhile")


@contextmanager
def committing_before(pattern: str, change: Callable[[], None],
                      after: bool = False) -> Iterator[list[str]]:
    """Run ``change`` (which commits) once, just before the first statement matching
    ``pattern`` is sent (``after``: before the statement that follows it): a commit landing
    between two reads."""
    fired: list[str] = []
    seen: list[str] = []

    def _before(_conn, _cursor, statement, _params, _context, _many) -> None:
        if fired:
            return
        if after and not seen:
            if re.search(pattern, statement, re.DOTALL):
                seen.append(statement)
            return
        if after or re.search(pattern, statement, re.DOTALL):
            fired.append(statement)
            change()

    event.listen(Engine, "before_cursor_execute", _before)
    try:
        yield fired
    finally:
        event.remove(Engine, "before_cursor_execute", _before)


def test_an_append_committing_during_the_check_is_not_a_tampered_end(db, tenant,
                                                                     database_url):
    """A record appended after the check read the chain head and before it read the
    records: the check passes (before, the record beyond the head it had read was
    "records at the end were removed", exit 1)."""
    with committing_before(r"FROM audit_events .*ORDER BY audit_events\.seq",
                           lambda: make_key(db, "admin", tenant.org)) as fired:
        result = roster(database_url, "audit", "verify", "--org", "acme")
    assert fired
    assert "ok   chain" in result.output


def test_a_deprovisioning_committing_during_the_check_is_not_an_added_record(
        db, tenant, client, database_url):
    """A deprovisioning committed after the check read the audit events and before it read
    the deprovisioning records: the check passes (before, its record was "no audit event
    names this record: it was added outside Roster", exit 1)."""
    leaver = make_leaver(db, tenant)
    operator = make_key(db, "operator")

    def deprovision() -> None:
        response = client.post(f"/api/v1/users/{leaver.user_id}/deprovision",
                               headers=operator.headers, json={"reason": "left"})
        assert response.status_code == 201, response.get_json()

    with committing_before(r"FROM deprovision_records", deprovision) as fired:
        result = roster(database_url, "audit", "verify", "--org", "acme")
    assert fired
    assert "BAD" not in result.output


def test_a_reactivation_committing_while_a_receipt_is_signed_is_no_broken_seal(
        db, tenant, client, database_url):
    """The user reactivated (its record stamped ``restored_at``, sealed by a stamp event)
    right after the receipt read the record: the receipt is signed (before, reading the
    stamp events after the record, it "failed its audit seal": a 409 telling the auditor
    the record was changed in the database)."""
    leaver = make_leaver(db, tenant)
    operator = make_key(db, "operator")
    response = client.post(f"/api/v1/users/{leaver.user_id}/deprovision",
                           headers=operator.headers, json={"reason": "left"})
    assert response.status_code == 201, response.get_json()
    record_id = response.get_json()["id"]
    auditor = make_key(db, "auditor", tenant.org)

    def reactivate() -> None:
        roster(database_url, "lifecycle", "reactivate", "--org", "acme", leaver.user_id)

    # Once the receipt read the record, before whatever it reads next.
    with committing_before(r"FROM deprovision_records\s+WHERE deprovision_records\.id",
                           reactivate, after=True) as fired:
        answer = client.get(f"/api/v1/deprovisions/{record_id}/receipt",
                            headers=auditor.headers)
    assert fired
    assert answer.status_code == 200, answer.get_json()
