"""PostgreSQL refuses ``TRUNCATE`` of the audit log's tables and any UPDATE or DELETE of a
signed checkpoint (migration 0034), while Roster's own paths (checkpoints written again as
the log grows, the purges) go on; SQLite has no triggers, and ``verify`` catches there what
PostgreSQL refuses."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.audit.test_verify import LOG_TABLES
from tests.conftest import rows
from tests.lifecycle.support import make_leaver, roster
from tests.scim.support import Scim

_NEEDS_PG = "TRUNCATE and the audit log's triggers are PostgreSQL's (SQLite has neither)"
_MESSAGES = {"audit_events": "audit_events is append-only: TRUNCATE is not allowed",
             "audit_checkpoints": "audit_checkpoints is append-only: TRUNCATE is not allowed",
             "audit_chain_heads": "audit_chain_heads belongs to the append-only audit log: "
                                  "TRUNCATE is not allowed"}


def _counts(db) -> dict[str, int]:
    return {table: rows(db, f"SELECT count(*) AS n FROM {table}")[0].n
            for table in LOG_TABLES}


def _refused(db, statement: str, message: str, **params: object) -> None:
    with pytest.raises(sa.exc.DBAPIError) as caught, db.engine.begin() as conn:
        conn.execute(sa.text(statement), params)
    assert message in str(caught.value.orig)
    assert caught.value.orig.sqlstate == "42501"  # insufficient_privilege


@pytest.mark.parametrize("statement", [*(f"TRUNCATE {t}" for t in LOG_TABLES),
                                       "TRUNCATE audit_events, audit_chain_heads, "
                                       "audit_checkpoints RESTART IDENTITY",
                                       "TRUNCATE organizations CASCADE"])
def test_truncating_the_log_is_refused_on_postgresql(db, dialect, tenant, database_url,
                                                     statement):
    """Each table alone, all three at once, or reached by a CASCADE from organizations:
    refused, the table named; every row stays and the log verifies."""
    if dialect != "postgresql":
        pytest.skip(_NEEDS_PG)
    make_leaver(db, tenant)
    roster(database_url, "audit", "checkpoint")
    before = _counts(db)
    assert all(before.values()), before
    # The first trigger to fire names its table; all three are reached by the CASCADE.
    named = [t for t in LOG_TABLES if t in statement]
    _refused(db, statement, _MESSAGES[named[0]] if named else "TRUNCATE is not allowed")
    assert _counts(db) == before
    assert "ok   chain" in roster(database_url, "audit", "verify", "--org", "acme").output


@pytest.mark.parametrize("statement", ["UPDATE audit_checkpoints SET key_id = '0000000000000000'",
                                       "UPDATE audit_checkpoints SET seq = seq - 1",
                                       "DELETE FROM audit_checkpoints"])
def test_checkpoints_cannot_be_changed_or_removed_on_postgresql(db, dialect, tenant,
                                                               database_url, statement):
    """A stored checkpoint is never updated or deleted: PostgreSQL refuses both, naming
    the table and the operation; on SQLite the changed key id is caught by ``verify``."""
    make_leaver(db, tenant)
    roster(database_url, "audit", "checkpoint")
    before = rows(db, "SELECT * FROM audit_checkpoints ORDER BY id")
    assert before
    if dialect == "postgresql":
        operation = statement.split()[0]
        _refused(db, statement, f"audit_checkpoints is append-only: {operation} is not allowed")
        assert rows(db, "SELECT * FROM audit_checkpoints ORDER BY id") == before
        assert "ok   chain" in roster(database_url, "audit", "verify", "--org", "acme").output
    elif "key_id" in statement:
        with db.engine.begin() as conn:
            conn.execute(sa.text(statement))
        output = roster(database_url, "audit", "verify", "--org", "acme", ok=False).output
        assert "names signing key '0000000000000000'" in output
    else:
        pytest.skip("SQLite: a checkpoint moved or removed shows only against kept copies")


def test_roster_only_adds_checkpoints_as_the_log_grows(client, db, tenant, database_url):
    """Checkpoints written, the log grown (a SCIM delete and the purge of that user),
    checkpoints written again and the worker's round: each run only adds rows, earlier ones
    stay as they were, and the log verifies (on PostgreSQL with every trigger in place)."""
    leaver = make_leaver(db, tenant)
    roster(database_url, "audit", "checkpoint")
    first = rows(db, "SELECT * FROM audit_checkpoints ORDER BY id")
    assert Scim(client, tenant).delete(f"/Users/{leaver.user_id}").status_code == 204
    roster(database_url, "lifecycle", "purge", "--retention-days", "0")
    roster(database_url, "audit", "checkpoint")
    roster(database_url, "worker", "--until-idle")
    after = rows(db, "SELECT * FROM audit_checkpoints ORDER BY id")
    assert len(after) > len(first)
    assert set(first) <= set(after)
    assert "ok   chain" in roster(database_url, "audit", "verify").output


def test_a_chain_head_cannot_be_deleted_on_postgresql(client, db, dialect, tenant,
                                                       database_url):
    """Deleting an organization's chain head (the next append would start its chain again
    at seq 1): PostgreSQL refuses, naming the table and DELETE, and the head stays; Roster's
    own paths go on (a SCIM delete, the purge, checkpoints, the worker) and the log verifies.
    On SQLite the delete goes through and ``verify`` calls the chain BAD."""
    leaver = make_leaver(db, tenant)
    roster(database_url, "audit", "checkpoint")
    head = "SELECT chain, seq, hash FROM audit_chain_heads WHERE chain = :c"
    before = rows(db, head, c=tenant.org.id)
    assert before
    delete = "DELETE FROM audit_chain_heads WHERE chain = :c"
    if dialect != "postgresql":
        with db.engine.begin() as conn:
            conn.execute(sa.text(delete), {"c": tenant.org.id})
        output = roster(database_url, "audit", "verify", "--org", "acme", ok=False).output
        assert f"BAD  chain {tenant.org.id}" in output
        return
    _refused(db, delete, "audit_chain_heads belongs to the append-only audit log: DELETE is "
             "not allowed", c=tenant.org.id)
    _refused(db, "DELETE FROM audit_chain_heads", "DELETE is not allowed")
    assert rows(db, head, c=tenant.org.id) == before
    assert Scim(client, tenant).delete(f"/Users/{leaver.user_id}").status_code == 204
    roster(database_url, "lifecycle", "purge", "--retention-days", "0")
    roster(database_url, "audit", "checkpoint")
    roster(database_url, "worker", "--until-idle")
    assert rows(db, head, c=tenant.org.id)[0].seq > before[0].seq
    assert "ok   chain" in roster(database_url, "audit", "verify").output
