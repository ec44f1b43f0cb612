"""A manager's restore by re-creation racing the deprovisioning of one of its reports
(PostgreSQL), the deprovisioning opening a mass-event batch.

The restore marks the manager's deprovisioning record restored, then links the reports that
wait for it (their ``manager_ref``), locking their rows. The report's deprovisioning holds
its row, and at COMMIT the guard opens a batch taking every unbatched record of the
directory, the manager's among them (app/lifecycle/guard.py: user rows first, records after).
The restore held that record and waited for the report; the guard held the report and
waited for the record: a deadlock, one of the two answered 503. The restore now locks the
waiting reports before it writes the record.

Over real HTTP on real threads: a side transaction holds the directory's guard lock, so
the deprovisioning stops at its COMMIT holding the report; the restore is sent then, and
the guard lock released once it waits.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.db import Database
from app.lifecycle.guard import _lock_key
from tests.conftest import Tenant, rows
from tests.lockwait import held, lock_waiters, started
from tests.scim.support import CORE_USER, ENTERPRISE, PATCH_OP, http_call, live_server

pytestmark = pytest.mark.usefixtures("postgres_only")

OFF = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}


@pytest.fixture
def postgres_only(dialect: str) -> None:
    if dialect != "postgresql":
        pytest.skip("row locks and concurrent writers are PostgreSQL's (SQLite has one writer)")


def _body(name: str, **extra: Any) -> dict[str, Any]:
    return {"schemas": [CORE_USER, ENTERPRISE], "userName": f"{name}@acme.example",
            "externalId": f"ext-{name}", **extra}


def test_a_manager_restored_while_a_report_is_deprovisioned_into_a_batch_deadlocks_neither(
        app, db: Database, tenant: Tenant) -> None:
    """Four of eight users deprovisioned, the manager M among them (deleted); its report R
    names M by externalId (pending). R's deactivation (the fifth: a batch opens) waits at
    the guard holding R; M's re-creation is sent. Both succeed (before: a deadlock, one
    503), R is linked to M, and the batch holds R's and the other records, M's restored."""
    with live_server(app) as url:
        def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            return http_call(url, tenant.token, method, path, body)

        ids = {}
        for name in ("m", "r", "o1", "o2", "o3", "o4", "o5", "o6"):
            status, body = call("POST", "/Users", _body(name))
            assert status == 201, body
            ids[name] = body["id"]
        assert call("DELETE", f"/Users/{ids['m']}")[0] == 204
        for name in ("o1", "o2", "o3"):
            assert call("PATCH", f"/Users/{ids[name]}", OFF)[0] == 200
        status, body = call("PATCH", f"/Users/{ids['r']}", {"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": f"{ENTERPRISE}:manager", "value": {"value": "ext-m"}}]})
        assert status == 200, body
        assert rows(db, "SELECT manager_ref FROM users WHERE id = :r", r=ids["r"])[0][0] == "ext-m"

        with held(db, "SELECT pg_advisory_xact_lock(:k)", k=_lock_key(tenant.directory.id)):
            off, deactivated = started(db, lambda: call("PATCH", f"/Users/{ids['r']}", OFF))
            assert lock_waiters(db) == 1, f"R's deprovisioning did not wait: {deactivated}"
            back, restored = started(db, lambda: call("POST", "/Users", _body("m")), waiters=2)
            assert lock_waiters(db) == 2, f"M's restore did not wait for R: {restored}"
        off.join(30)
        back.join(30)
    assert deactivated["result"][0] == 200, deactivated
    assert restored["result"][0] == 201, restored
    assert restored["result"][1]["id"] == ids["m"]
    assert rows(db, "SELECT manager_id, manager_ref, active FROM users WHERE id = :r",
                r=ids["r"])[0] == (ids["m"], None, False)
    batched = rows(db, "SELECT user_id FROM deprovision_records WHERE batch_id IS NOT NULL")
    assert {ids[n] for n in ("m", "r", "o1", "o2", "o3")} == {r[0] for r in batched}
    assert rows(db, "SELECT restored_at IS NOT NULL FROM deprovision_records "
                    "WHERE user_id = :m", m=ids["m"])[0][0] is True
