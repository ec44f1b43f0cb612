"""The SSO purge goes a batch per transaction: a backlog (a deployment that ran without
`roster worker`) was deleted in one transaction holding SQLite's write lock, every SCIM
write and login waiting behind it, for as long as the purge took. A worker round deletes
at most 20 batches and goes on at its next round; `roster sso purge-traces` to the end."""

from __future__ import annotations

from datetime import timedelta

from app.db import new_id, utcnow
from app.models.sso import LoginTrace
from tests.conftest import rows
from tests.lifecycle.support import roster


def _expired_traces(db, tenant, count: int) -> None:
    with db.transaction() as session:
        session.add_all(LoginTrace(id=new_id(), organization_id=tenant.org.id,
                                   protocol="saml", reason="expired", detail="", payload={},
                                   created_at=utcnow() - timedelta(days=31))
                        for _ in range(count))


def _left(db) -> int:
    return rows(db, "SELECT count(*) FROM sso_login_traces")[0][0]


def test_a_worker_round_purges_at_most_twenty_batches(db, tenant, database_url):
    """With batches of 2, one round of `roster worker` deletes 40 of 45 expired traces."""
    _expired_traces(db, tenant, 45)
    roster(database_url, "worker", "--until-idle", ROSTER_EVENTS__PURGE_BATCH_SIZE="2")
    assert _left(db) == 5


def test_purge_traces_deletes_a_backlog_to_the_end_in_batches(db, tenant, database_url):
    """`roster sso purge-traces` goes on, batch after batch, until nothing expired is left."""
    _expired_traces(db, tenant, 45)
    out = roster(database_url, "sso", "purge-traces", ROSTER_EVENTS__PURGE_BATCH_SIZE="2")
    assert "45 trace(s) deleted" in out.output
    assert _left(db) == 0
