"""The deprovisioning record's commit stamp (revocation_committed_at, latency_ms).

It is written right after the revoking transaction commits, by a second, short write. That
write must not need a second connection while the first is still held (a burst larger than
half the pool would wait on itself), and must wait for the outer commit when the
deprovisioning ran in a savepoint.
"""

from __future__ import annotations

from sqlalchemy import event, select

from app.lifecycle import Trigger, deprovision_user
from app.models import User
from app.models.lifecycle import DeprovisionRecord
from tests.conftest import OPERATOR, rows
from tests.lifecycle.support import add_user


def _stamp(db, record_id: str):
    [row] = rows(db, "SELECT revocation_committed_at, latency_ms, applied_at FROM "
                     "deprovision_records WHERE id = :i", i=record_id)
    return row


def test_the_stamp_runs_on_the_connection_the_transaction_gave_back(db, tenant, dialect):
    """While the stamp's UPDATE runs, the unit of work holds no more connections than it
    did before it began: PostgreSQL's was returned to the pool and taken again, a thread's
    own SQLite connection is reused."""
    user_id = add_user(db, tenant, "u1")
    with db.transaction() as session:  # opens this thread's own SQLite connection, if any
        session.get(User, user_id)
    before = db.engine.pool.checkedout()
    seen: list[int] = []

    def spy(conn, cursor, statement, params, context, executemany) -> None:
        if statement.startswith("UPDATE deprovision_records SET revocation_committed_at"):
            seen.append(db.engine.pool.checkedout())

    event.listen(db.engine, "before_cursor_execute", spy)
    try:
        with db.transaction() as session:
            rec = deprovision_user(session, session.get(User, user_id), OPERATOR,
                                   trigger=Trigger.operator)
    finally:
        event.remove(db.engine, "before_cursor_execute", spy)
    assert seen == [before + (0 if dialect == "sqlite" else 1)]
    stamp = _stamp(db, rec.id)
    assert stamp.revocation_committed_at is not None
    assert stamp.latency_ms >= 0


def test_a_deprovisioning_in_a_savepoint_is_stamped_after_the_outer_commit(db, tenant):
    """Releasing the savepoint is not the commit: the stamp waits for the transaction."""
    user_id = add_user(db, tenant, "u1")
    with db.transaction() as session:
        with session.begin_nested():
            rec = deprovision_user(session, session.get(User, user_id), OPERATOR,
                                   trigger=Trigger.operator)
        assert _stamp_in(session, rec.id) is None  # not yet, as the transaction sees it
    assert _stamp(db, rec.id).revocation_committed_at is not None


def test_a_rolled_back_savepoint_keeps_the_stamps_made_before_it(db, tenant):
    """A savepoint rolled back after one deprovisioning: the record made before it is still
    stamped at the commit."""
    first, second = add_user(db, tenant, "u1"), add_user(db, tenant, "u2")
    with db.transaction() as session:
        rec = deprovision_user(session, session.get(User, first), OPERATOR,
                               trigger=Trigger.operator)
        savepoint = session.begin_nested()
        deprovision_user(session, session.get(User, second), OPERATOR,
                         trigger=Trigger.operator)
        savepoint.rollback()
    assert _stamp(db, rec.id).revocation_committed_at is not None
    assert rows(db, "SELECT count(*) FROM deprovision_records")[0][0] == 1


def _stamp_in(session, record_id: str):
    """The record's commit stamp as the transaction itself sees it."""
    return session.execute(select(DeprovisionRecord.revocation_committed_at).where(
        DeprovisionRecord.id == record_id).execution_options(populate_existing=True)).scalar()
