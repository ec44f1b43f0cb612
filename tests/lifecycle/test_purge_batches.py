"""The purge of users past retention goes a batch per transaction: on PostgreSQL, one
statement naming more than 65,535 users is refused (its limit of bound parameters), so a
first purge of a large directory failed at every run (`roster lifecycle purge` exited 1,
`roster worker` failed its rounds) and nobody was ever purged; on either database it held
its locks (SQLite's write lock) for as long as the whole purge took."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert

from app.db import new_id, utcnow
from app.models.directory import User, UserStatus
from tests.conftest import rows
from tests.lifecycle.support import roster


def _deleted_users(db, tenant, count: int) -> None:
    """``count`` users SCIM-deleted 40 days ago (past lifecycle.retention_days, 30)."""
    old = utcnow() - timedelta(days=40)
    with db.transaction() as session:
        session.execute(insert(User), [
            {"id": new_id(), "directory_id": tenant.directory.id,
             "organization_id": tenant.org.id, "user_name": f"leaver{n}.deleted",
             "active": False, "status": UserStatus.deleted, "deleted_at": old}
            for n in range(count)])


def _count(db, query: str) -> int:
    return rows(db, query)[0][0]


def test_more_users_than_one_statement_may_name_are_purged(db, tenant, database_url,
                                                           dialect):
    """65,600 users due on PostgreSQL (1,200 on SQLite, whose limit is far higher):
    `roster lifecycle purge` purges them all, each with its `user:purge` audit event."""
    due = 65_600 if dialect == "postgresql" else 1_200
    _deleted_users(db, tenant, due)
    out = roster(database_url, "lifecycle", "purge").output
    assert f"purged {due} user(s) deleted more than 30 day(s) ago" in out
    assert _count(db, "SELECT count(*) FROM users") == 0
    assert _count(db, "SELECT count(*) FROM audit_events WHERE action = 'user:purge'") == due


def test_a_worker_round_purges_a_bounded_share(db, tenant, database_url):
    """A worker round purges at most 20 batches (events.purge_batch_size users each), so a
    first large purge does not hold up webhook delivery; the rest goes in the next rounds.
    Before, the round purged all 45 in one transaction."""
    _deleted_users(db, tenant, 45)
    roster(database_url, "worker", "--until-idle", ROSTER_EVENTS__PURGE_BATCH_SIZE="2")
    assert _count(db, "SELECT count(*) FROM users") == 5
    assert _count(db, "SELECT count(*) FROM audit_events WHERE action = 'user:purge'") == 40
