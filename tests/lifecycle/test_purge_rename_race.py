"""The purge of users SCIM-deleted past the retention (`roster worker`) racing a group
rename on another node (PostgreSQL): the lock order of app/lifecycle/batches.py.

A rename locks its group's row, then every member, the deleted ones too (a restore brings
their membership back), in one statement in id order. The purge locked its users, then
waited for their reports' rows to move the reports' versions. A report sorting before its
deleted manager, in a group being renamed: the rename held the report and waited for the
manager, the purge held the manager and waited for the report, and PostgreSQL aborted one
of them as a deadlock victim.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.db import Database, utcnow
from app.lifecycle.batches import purge_deleted
from tests.conftest import OPERATOR, Tenant, rows
from tests.lockwait import held, started
from tests.scim.support import ENTERPRISE, PATCH_OP, Scim


@pytest.fixture
def postgres_only(dialect: str) -> None:
    if dialect != "postgresql":
        pytest.skip("row locks and concurrent writers are PostgreSQL's (SQLite has one)")


def _deleted_manager_in_a_group(client, db: Database, tenant: Tenant) -> tuple[str, str, str]:
    """A manager SCIM-deleted 31 days ago (retention 30) whose live report's id sorts
    before its own, both members of one group: (manager, report, group)."""
    scim = Scim(client, tenant)
    first = scim.create_user("one@acme.example", externalId="ext-1")["id"]
    second = scim.create_user("two@acme.example", externalId="ext-2")["id"]
    report, boss = sorted([first, second])
    assert scim.patch(f"/Users/{report}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "add", "path": f"{ENTERPRISE}:manager", "value": {"value": boss}}]}
    ).status_code == 200
    group = scim.create_group("Buyers", [report, boss])["id"]
    assert scim.delete(f"/Users/{boss}").status_code == 204
    with db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE users SET deleted_at = %(t)s WHERE id = %(u)s",
                             {"t": utcnow() - timedelta(days=31), "u": boss})
    return boss, report, group


def _purge(db: Database) -> int:
    with db.transaction() as session:
        return purge_deleted(session, OPERATOR, retention_days=30)


@pytest.mark.usefixtures("postgres_only")
def test_a_group_rename_and_the_purge_of_its_deleted_member_do_not_deadlock(app, client, db,
                                                                              tenant):
    """The rename waits for the report's row (a write holds it), the purge starts
    meanwhile; once the row is free both finish: the rename answers 200 and the purge
    leaves the manager it could not finish for its next run, which purges it."""
    boss, report, group = _deleted_manager_in_a_group(client, db, tenant)
    rename = {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "displayName", "value": "Purchasers"}]}
    with held(db, "SELECT id FROM users WHERE id = :r FOR UPDATE", r=report):
        renaming, renamed = started(db, lambda: Scim(app.test_client(), tenant).patch(
            f"/Groups/{group}", rename))
        purge, purged = started(db, lambda: _purge(db), waiters=2)
    renaming.join(30)
    purge.join(30)
    assert not isinstance(purged.get("result"), BaseException), purged
    assert not isinstance(renamed.get("result"), BaseException), renamed
    assert renamed["result"].status_code in (200, 204), renamed["result"].get_json()
    assert rows(db, "SELECT display_name FROM groups WHERE id = :g", g=group)[0][0] == \
        "Purchasers"
    assert purged["result"] == 0  # the report was held: the manager waits for the next run
    assert _purge(db) == 1
    assert rows(db, "SELECT count(*) FROM users WHERE id = :u", u=boss)[0][0] == 0
    assert rows(db, "SELECT manager_id FROM users WHERE id = :u", u=report)[0][0] is None
