"""Lifecycle settings given to create_app reach the deprovisioning path of that app only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from app import create_app
from app.db import Database
from app.lifecycle.policy import LifecyclePolicy, current_policy
from tests.conftest import app_overrides, make_tenant, rows
from tests.scim.support import PATCH_OP, Scim

OFF = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}


@pytest.fixture
def strict_app(database_url: str, app: Flask) -> Iterator[Flask]:
    """A second app on the same database whose mass-event guard fires at 3 users."""
    overrides = {**app_overrides(database_url), "recorder": {"enabled": False},
                 "lifecycle": {"mass_count": 3, "mass_min_count": 1, "retention_days": 0}}
    built = create_app(overrides)
    yield built
    built.extensions["roster.db"].dispose()


def _deactivate(client, tenant, count: int) -> None:
    scim = Scim(client, tenant)
    ids = [scim.create_user(f"u{i}@{tenant.org.slug}.example", externalId=f"x{i}")["id"]
           for i in range(40)]
    for user_id in ids[:count]:
        assert scim.patch(f"/Users/{user_id}", OFF).status_code == 200


def test_mass_count_override_reaches_the_guard_over_http(strict_app, app, db, client):
    """With mass_count 3 the third deactivation of 40 users opens a batch and alerts; the
    suite's app (defaults: 50 users, at least 5) built earlier in the process does not."""
    strict = make_tenant(db, "strict", "okta")
    _deactivate(strict_app.test_client(), strict, 3)
    batches = rows(db, "SELECT directory_id, count FROM deprovision_batches")
    assert [(b.directory_id, b.count) for b in batches] == [(strict.directory.id, 3)]
    assert rows(db, "SELECT count(*) FROM outbox_events WHERE type = "
                    "'directory.mass_deprovision'")[0][0] == 1
    relaxed = make_tenant(db, "relaxed", "okta")
    _deactivate(client, relaxed, 3)
    assert rows(db, "SELECT count(*) FROM deprovision_batches WHERE directory_id = :d",
                d=relaxed.directory.id)[0][0] == 0


def test_retention_override_reaches_the_restore_on_create(strict_app, client, db):
    """retention_days 0: a re-created externalId is a new user in that app only."""
    tenant = make_tenant(db, "acme", "entra")
    for which, expect_same in ((strict_app.test_client(), False), (client, True)):
        scim = Scim(which, tenant)
        first = scim.create_user(f"r{expect_same}@acme.example", externalId=f"e{expect_same}")
        assert scim.delete(f"/Users/{first['id']}").status_code == 204
        again = scim.create_user(f"r{expect_same}@acme.example", externalId=f"e{expect_same}")
        assert (again["id"] == first["id"]) is expect_same


def test_each_engine_keeps_its_own_policy(strict_app, app):
    """current_policy(session) follows the database the session is bound to."""
    strict_db: Database = strict_app.extensions["roster.db"]
    with strict_db.transaction() as session:
        assert current_policy(session).mass_count == 3
    with app.extensions["roster.db"].transaction() as session:
        assert current_policy(session) == LifecyclePolicy.from_settings(app.config["ROSTER"])
        assert current_policy(session).mass_count == 50
