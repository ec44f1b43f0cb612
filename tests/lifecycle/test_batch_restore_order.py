"""A batch restore locks its users in id order, as every write locking several users does
(app/mapping/reevaluation.py, step 3), so it cannot deadlock with one (PostgreSQL).

It reactivated them in the order of their records, one row lock at a time: holding a user
of a higher id, it waited for a lower one that another transaction held, which then asked
for the higher one: a cycle, and PostgreSQL aborted one of the two."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from tests.conftest import make_tenant, rows
from tests.lifecycle.support import roster
from tests.lifecycle.test_reactivate_name import _create, _delete
from tests.lockwait import wait_for_a_row_lock_wait
from tests.scim.support import Scim

_LOCK = sa.text("SELECT id FROM users WHERE id = :id FOR NO KEY UPDATE")


def test_a_batch_restore_takes_its_users_in_id_order(client, db, database_url, dialect):
    """Users deleted in descending id order (a batch of 6 of 12); another transaction
    holds the lowest: the restore waits for it before it locks any other, so that
    transaction can still take the highest, and both finish (before: a deadlock)."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: no row locks to take in an order")
    tenant = make_tenant(db, "acme", "entra")
    scim = Scim(client, tenant)
    ids = [_create(scim, f"u{i}@acme.example", f"ext-{i}") for i in range(12)]
    batch_users = sorted(ids[:6], reverse=True)
    for user_id in batch_users:  # the records, highest id first
        _delete(scim, user_id)
    [batch_id] = [r.id for r in rows(db, "SELECT id FROM deprovision_batches")]
    lowest, highest = batch_users[-1], batch_users[0]
    outcome: list[str] = []
    restore = threading.Thread(target=lambda: outcome.append(
        roster(database_url, "lifecycle", "restore", "--batch", batch_id).output))
    with db.engine.connect() as conn, conn.begin():
        conn.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
        conn.execute(_LOCK, {"id": lowest})
        restore.start()
        wait_for_a_row_lock_wait(db)  # the restore waits for the lowest id
        conn.execute(_LOCK, {"id": highest})  # free: the restore took nothing before it
    restore.join(30)
    assert outcome, "the restore failed (before: PostgreSQL aborted it as a deadlock victim)"
    assert "6 user(s) reactivated" in outcome[0]
    states = rows(db, "SELECT status FROM users WHERE id IN "
                      f"({', '.join(repr(i) for i in batch_users)})")
    assert {s.status for s in states} == {"active"}
