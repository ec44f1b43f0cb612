"""Mass-event guard under a concurrent burst (audit finding F2): one batch, one alert, all
counted, all restored, however the IdP's parallel deactivations interleave."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from flask import Flask

from app import create_app
from app.db import Database
from app.directory.users import get_user
from app.lifecycle import Trigger, deprovision_user
from app.lifecycle.batches import restore_batch
from app.models import User
from tests.conftest import OPERATOR, Tenant, app_overrides, make_tenant, rows
from tests.lifecycle.support import add_user
from tests.lockwait import wait_for_a_row_lock_wait
from tests.scim.support import PATCH_OP, Scim, at_once, http_call, live_server

USERS, BURST, ROUNDS = 40, 14, 3  # 14 of 40 is past the default 10 % share and 5 minimum
OFF = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}


@pytest.fixture
def burst_app(database_url: str, app: Flask) -> Iterator[Flask]:
    """The app on the suite's database with a pool for the whole burst: each request holds
    a connection and, after its commit, a second one stamps the record (app/lifecycle/records)."""
    overrides = {**app_overrides(database_url), "recorder": {"enabled": False},
                 "database": {"url": database_url, "pool_size": 2 * BURST}}
    built = create_app(overrides)
    yield built
    built.extensions["roster.db"].dispose()


def _burst(url: str, tenant: Tenant, user_ids: list[str]) -> list[int]:
    """Deactivate every user at once (PATCH active=false), one thread each."""
    return [status for status, _ in at_once([
        lambda user_id=user_id: http_call(url, tenant.token, "PATCH", f"/Users/{user_id}", OFF)
        for user_id in user_ids])]


def test_a_concurrent_burst_forms_one_batch_that_restores_everyone(burst_app: Flask,
                                                                    db: Database):
    """14 parallel deactivations of one directory (as Okta sends them), three times over:
    each directory gets exactly one batch counting all 14, one directory.mass_deprovision
    event and one audit event, and restoring the batch brings all 14 back."""
    tenants = [make_tenant(db, f"burst{n}") for n in range(ROUNDS)]
    with live_server(burst_app) as url:
        for tenant in tenants:
            ids = [add_user(db, tenant, f"u{i}") for i in range(USERS)]
            # A first request stamps the token's last_used_at, as an IdP's earlier traffic
            # has: otherwise every request of the burst would stamp it, and queue on its row.
            assert Scim(burst_app.test_client(), tenant).get("/Users").status_code == 200
            assert _burst(url, tenant, ids[:BURST]) == [200] * BURST
    for tenant in tenants:
        directory = tenant.directory.id
        batches = rows(db, "SELECT id, count FROM deprovision_batches WHERE directory_id = :d",
                       d=directory)
        assert [b.count for b in batches] == [BURST], batches
        batch_id = batches[0].id
        assert rows(db, "SELECT count(*) FROM deprovision_records WHERE directory_id = :d "
                        "AND batch_id = :b", d=directory, b=batch_id)[0][0] == BURST
        assert rows(db, "SELECT count(*) FROM outbox_events WHERE aggregate_id = :d AND "
                        "type = 'directory.mass_deprovision'", d=directory)[0][0] == 1
        assert rows(db, "SELECT count(*) FROM audit_events WHERE subject_id = :d AND "
                        "action = 'directory:mass_deprovision'", d=directory)[0][0] == 1
        with db.transaction() as session:
            assert len(restore_batch(session, batch_id, OPERATOR).restored) == BURST
        assert rows(db, "SELECT count(*) FROM users WHERE directory_id = :d AND active AND "
                        "status = 'active'", d=directory)[0][0] == USERS


def test_the_guard_locks_its_directory_after_every_user_row(db: Database, tenant: Tenant,
                                                            dialect: str):
    """Lock order (PostgreSQL): a transaction that has deprovisioned users and then waits
    for another user's row holds no directory lock yet, so the holder of that row can
    deprovision it and commit (a guard locking inline would deadlock here)."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time and no row locks")
    ids = [add_user(db, tenant, f"u{i}") for i in range(20)]
    contested = ids[-1]
    outcome: dict[str, object] = {}
    holding, waiting = threading.Event(), threading.Event()

    def many() -> None:  # deprovisions six, then needs the contested user's row
        holding.wait(10)
        try:
            with db.transaction() as session:
                for user_id in ids[:6]:
                    deprovision_user(session, session.get(User, user_id), OPERATOR,
                                     trigger=Trigger.lost_all_grants)
                waiting.set()
                user = get_user(session, tenant.directory.id, contested, for_update=True)
                deprovision_user(session, user, OPERATOR, trigger=Trigger.lost_all_grants)
            outcome["many"] = "committed"
        except Exception as exc:  # reported by the assertion below
            outcome["many"] = exc

    worker = threading.Thread(target=many)
    worker.start()
    with db.transaction() as session:
        user = get_user(session, tenant.directory.id, contested, for_update=True)
        holding.set()
        waiting.wait(10)
        wait_for_a_row_lock_wait(db)
        deprovision_user(session, user, OPERATOR, trigger=Trigger.scim_active_false)
    worker.join(30)
    assert outcome["many"] == "committed", outcome
    [batch] = rows(db, "SELECT id, count FROM deprovision_batches")
    assert batch.count == 7
    assert rows(db, "SELECT count(*) FROM deprovision_records WHERE batch_id = :b",
                b=batch.id)[0][0] == 7
