"""No code path updates or deletes audit rows: watched on the wire during every lifecycle
operation (API, SCIM, CLI, worker), and nowhere in the source."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.api.conftest import make_key
from tests.conftest import rows
from tests.lifecycle.support import make_leaver, roster
from tests.scim.support import Scim

APP = Path(__file__).resolve().parents[2] / "app"
_REWRITE = re.compile(
    r"^\s*(UPDATE|DELETE\s+FROM|TRUNCATE)\s+\"?audit_(events|checkpoints)\"?\b", re.IGNORECASE)


@contextmanager
def rewrites_of_the_log() -> Iterator[list[str]]:
    """Every UPDATE, DELETE or TRUNCATE of audit_events or audit_checkpoints sent by any
    engine in this process."""
    seen: list[str] = []

    def _watch(_conn, _cursor, statement, _params, _context, _many) -> None:
        if _REWRITE.search(statement):
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", _watch)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", _watch)


def test_lifecycle_operations_only_ever_insert_audit_rows(client, db, tenant, database_url):
    """Deprovision and reactivate over the API, SCIM DELETE, purge from the CLI and a worker
    round (checkpoint): not one UPDATE or DELETE reaches audit_events or audit_checkpoints
    (which PostgreSQL refuses), earlier rows stay byte for byte, and the chain verifies."""
    leaver = make_leaver(db, tenant)
    operator = make_key(db, "operator")
    before = rows(db, "SELECT id, hash FROM audit_events ORDER BY id")
    with rewrites_of_the_log() as seen:
        for action in ("deprovision", "reactivate"):
            response = client.post(f"/api/v1/users/{leaver.user_id}/{action}",
                                   headers=operator.headers, json={"reason": "test"})
            assert response.status_code in (200, 201), response.get_json()
        assert Scim(client, tenant).delete(f"/Users/{leaver.user_id}").status_code == 204
        roster(database_url, "lifecycle", "purge", "--retention-days", "0")
        roster(database_url, "worker", "--until-idle")
    assert seen == []
    after = rows(db, "SELECT id, hash FROM audit_events ORDER BY id")
    assert after[:len(before)] == before
    assert {"user:deprovision", "user:reactivate", "user:delete", "user:purge"} <= {
        r.action for r in rows(db, "SELECT action FROM audit_events")}
    assert "ok   chain" in roster(database_url, "audit", "verify", "--org", "acme").output


def test_no_source_file_rewrites_the_log():
    """app/ holds no UPDATE or DELETE of audit_events or audit_checkpoints (AuditEvent,
    AuditCheckpoint), in SQL or SQLAlchemy: PostgreSQL refuses them (migrations 0004, 0034)."""
    patterns = [_REWRITE, re.compile(r"\b(update|delete)\(\s*Audit(Event|Checkpoint)\b"),
                re.compile(r"Audit(Event|Checkpoint)\.__table__\.(update|delete)\(")]
    offenders = [f"{path.relative_to(APP)}:{number}"
                 for path in sorted(APP.rglob("*.py"))
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if any(p.search(line) for p in patterns)]
    assert offenders == []
