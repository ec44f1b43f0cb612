"""Entra's restore by re-creation racing a plain create of the same userName (audit F3).

Both requests go through the real app over real HTTP on real threads: on PostgreSQL the
create used to rename the deleted holder of the name after the restore had brought it back,
so both answered 201 and the live, restored user was left named ``<id>.deleted``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest

from app.db import Database
from app.directory.users import UserInput, create_user, get_user, remove_user
from app.errors import Conflict
from app.models import Directory
from tests.conftest import OPERATOR, Tenant, make_tenant, rows
from tests.lifecycle.test_restore_on_create import entra_user
from tests.scim.support import at_once, http_call, live_server

ROUNDS = 20  # the old code lost the name in 18 of 20 pairs on PostgreSQL (audit F3)


def _call(url: str, token: str, method: str, path: str,
          body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any] | None]:
    return http_call(url, token, method, path, body, timeout=30)


def _race(url: str, token: str, requests: dict[str, tuple[str, str, dict[str, Any]]],
          ) -> dict[str, tuple[int, dict[str, Any] | None]]:
    """Send every request at once (threads released by a barrier); the results by key."""
    keys = list(requests)
    return dict(zip(keys, at_once([lambda key=key: _call(url, token, *requests[key])
                                   for key in keys], timeout=60), strict=True))


def _payload(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else json.loads(value)


def _last_name_event(db: Database, user_id: str) -> tuple[str, dict[str, Any]]:
    """The user's latest user.created / user.reactivated event: type and payload."""
    found = rows(db, "SELECT type, payload FROM outbox_events WHERE aggregate_id = :u AND "
                     "type IN ('user.created', 'user.reactivated') ORDER BY id", u=user_id)
    return found[-1].type, _payload(found[-1].payload)


def _check_round(db: Database, url: str, tenant: Tenant, name: str, deleted_id: str,
                 results: dict[str, tuple[int, dict[str, Any] | None]]) -> None:
    """Exactly one request holds the name, as stored, answered and announced."""
    statuses = {key: status for key, (status, _) in results.items()}
    restored = statuses["restore"] == 201
    assert sorted(statuses.values()) in ([201, 409], [200, 409]), results
    loser = next(body for status, body in results.values() if status == 409)
    assert loser is not None
    assert (loser["status"], loser["scimType"]) == ("409", "uniqueness")
    winner = next(body for status, body in results.values() if status != 409)
    assert winner is not None
    assert (winner["id"] == deleted_id) == restored
    # The answer is what was stored (RFC 7644 §3.3), and so is the event announcing it.
    status, fetched = _call(url, tenant.token, "GET", f"/Users/{winner['id']}")
    assert (status, fetched) == (200, winner)
    if restored or "create" in statuses:  # a restore or a create won: it announced the name
        kind, payload = _last_name_event(db, winner["id"])
        assert kind == ("user.reactivated" if restored else "user.created")
        assert payload["user_name"] == winner["userName"]
    live = rows(db, "SELECT id, user_name FROM users WHERE deleted_at IS NULL "
                    "AND directory_id = :d", d=tenant.directory.id)
    holders = [row.id for row in live if row.user_name.lower() == name.lower()]
    assert holders == [winner["id"]], live
    assert not [row for row in live if row.user_name.endswith(".deleted")], live
    if not restored:  # nothing restored: still deleted, no reactivation
        assert _call(url, tenant.token, "GET", f"/Users/{deleted_id}")[0] == 404
        assert rows(db, "SELECT count(*) FROM outbox_events WHERE aggregate_id = :u AND "
                        "type = 'user.reactivated'", u=deleted_id)[0][0] == 0


def _post_user(url: str, tenant: Tenant, name: str, external_id: str) -> str:
    status, created = _call(url, tenant.token, "POST", "/Users", entra_user(name, external_id))
    assert status == 201, created
    assert created is not None
    return str(created["id"])


@pytest.mark.parametrize("rival", ["create", "rename"])
def test_restore_racing_a_new_holder_of_its_user_name_leaves_one_holder(app, db, rival):
    """Restore (same externalId) against a create of the same userName, or a PUT renaming
    another user to it, exact and in another case: one success and one 409 uniqueness
    each time; no live user is renamed."""
    tenant = make_tenant(db, "acme", "entra")
    with live_server(app) as url:
        for attempt in range(ROUNDS):
            name = f"race{attempt}-{uuid.uuid4().hex[:8]}@acme.example"
            external_id = f"ext-{uuid.uuid4()}"
            deleted_id = _post_user(url, tenant, name, external_id)
            assert _call(url, tenant.token, "DELETE", f"/Users/{deleted_id}")[0] == 204
            rival_name = name.upper() if attempt % 2 else name
            rival_external_id = f"other-{uuid.uuid4()}"
            if rival == "create":
                other = ("POST", "/Users", entra_user(rival_name, rival_external_id))
            else:
                other_id = _post_user(url, tenant, f"x{attempt}-{name}", rival_external_id)
                other = ("PUT", f"/Users/{other_id}",
                         entra_user(rival_name, rival_external_id))
            results = _race(url, tenant.token, {
                "restore": ("POST", "/Users", entra_user(name, external_id)), rival: other})
            _check_round(db, url, tenant, name, deleted_id, results)


def test_a_create_waiting_on_a_restore_gets_conflict_and_renames_nothing(db):
    """The services, one step at a time: the restore holds the user's row while a create
    of its name (another case) runs; once the restore commits, the create is a Conflict."""
    tenant = make_tenant(db, "acme", "entra")
    restore_input = UserInput({"user_name": "pat@acme.example", "external_id": "ext-pat"})
    with db.transaction() as session:
        directory = session.get(Directory, tenant.directory.id)
        user_id = create_user(session, directory, restore_input, OPERATOR).id
    with db.transaction() as session:
        remove_user(session, get_user(session, tenant.directory.id, user_id, for_update=True),
                    OPERATOR)
    restoring = threading.Event()
    outcome: dict[str, str] = {}

    def restore() -> None:
        with db.transaction() as session:
            directory = session.get(Directory, tenant.directory.id)
            outcome["restore"] = create_user(session, directory, restore_input, OPERATOR).id
            restoring.set()
            time.sleep(0.5)  # the create below reads the deleted holder and waits on its row

    def create() -> None:
        restoring.wait(10)
        try:
            with db.transaction() as session:
                directory = session.get(Directory, tenant.directory.id)
                create_user(session, directory, UserInput(
                    {"user_name": "PAT@acme.example", "external_id": "ext-other"}), OPERATOR)
            outcome["create"] = "created"
        except Conflict:
            outcome["create"] = "conflict"

    threads = [threading.Thread(target=restore), threading.Thread(target=create)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert outcome == {"restore": user_id, "create": "conflict"}
    assert [tuple(r) for r in rows(db, "SELECT id, user_name, status FROM users")] == [
        (user_id, "pat@acme.example", "active")]
