"""`roster audit verify` on a live PostgreSQL deployment: what commits while it reads does
not make an untouched log look tampered with (it reads one snapshot)."""

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
def committing_before(pattern: str, change: Callable[[], None]) -> Iterator[list[str]]:
    """Run ``change`` (which commits) once, just before the first statement matching
    ``pattern`` is sent: a commit landing between two reads of the check."""
    fired: list[str] = []

    def _before(_conn, _cursor, statement, _params, _context, _many) -> None:
        if not fired and re.search(pattern, statement, re.DOTALL):
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
