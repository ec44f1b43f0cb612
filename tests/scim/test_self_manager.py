"""A user who is its own manager, and two users managing each other. HR systems often make
the top of the hierarchy (the CEO) their own manager, and Entra or Okta push what HR holds:
refusing it would fail that user's provisioning every cycle. Roster takes it as any other
reference (app/directory/managers.py) and nothing walking managers loops on it: the
approver chain stops where it meets a user again, a leaver is no one to hand its own
approvals to, and a delete or restore announces nothing to the user about itself."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from tests.api.conftest import make_key
from tests.conftest import rows
from tests.scim.support import ENTERPRISE, PATCH_OP, Scim, user_body


@pytest.fixture
def scim(client, tenant):
    return Scim(client, tenant)


def _stored(db, user_id: str) -> tuple:
    [row] = rows(db, "SELECT manager_id, manager_ref FROM users WHERE id = :u", u=user_id)
    return row.manager_id, row.manager_ref


def _enterprise(manager: str) -> dict:
    """The enterprise block of tests.scim.support.user_body, with a manager."""
    return {"department": "Engineering", "costCenter": "CC-1", "manager": {"value": manager}}


def _json(payload: Any) -> dict:
    return json.loads(payload) if isinstance(payload, str) else payload


def _set_manager(scim: Scim, user_id: str, value: str) -> dict:
    response = scim.patch(f"/Users/{user_id}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "Replace", "path": f"{ENTERPRISE}:manager", "value": value}]})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def _chain(client, db, tenant, user_id: str) -> list[str]:
    """The approver chain the portal reads (GET /api/v1/users/{id}/access), bounded in time:
    a loop would hang the request, so it runs on a thread the test waits for."""
    key = make_key(db, "admin", tenant.org)
    result: dict = {}

    def call() -> None:
        result["response"] = client.get(f"/api/v1/users/{user_id}/access", headers=key.headers)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert "response" in result, "the access request did not finish"
    response = result["response"]
    assert response.status_code == 200, response.get_json()
    return [m["user_name"] for m in response.get_json()["approvers"]["managers"]]


def test_entra_naming_the_user_itself_by_id_is_taken(client, scim, db, tenant):
    """Entra sends the manager's SCIM id: the user's own. 200, shown with its $ref and
    display; filters find it; the approver chain is empty (nobody above; it does not
    approve its own orders as its manager)."""
    ceo = scim.create_user("ceo@acme.example", externalId="00uceo", displayName="The CEO")
    shown = _set_manager(scim, ceo["id"], ceo["id"])
    manager = shown[ENTERPRISE]["manager"]
    assert manager["value"] == ceo["id"]
    assert manager["displayName"] == "The CEO"
    assert manager["$ref"].endswith(f"/Users/{ceo['id']}")
    assert _stored(db, ceo["id"]) == (ceo["id"], None)
    found = scim.get("/Users", query_string={
        "filter": f'{ENTERPRISE}:manager.value eq "{ceo["id"]}"'}).get_json()
    assert [u["id"] for u in found["Resources"]] == [ceo["id"]]
    assert _chain(client, db, tenant, ceo["id"]) == []
    # Its reports' chain ends with it.
    report = scim.create_user("cto@acme.example", externalId="00ucto",
                              **{ENTERPRISE: {"manager": {"value": ceo["id"]}}})
    assert _chain(client, db, tenant, report["id"]) == ["ceo@acme.example"]
    # A PUT repeating it (Okta's GET then PUT, or Entra's next cycle) changes nothing.
    again = scim.put(f"/Users/{ceo['id']}", user_body(
        "ceo@acme.example", externalId="00uceo", displayName="The CEO",
        **{ENTERPRISE: _enterprise(ceo["id"])}))
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["meta"]["version"] == shown["meta"]["version"]


@pytest.mark.parametrize("how", ["externalId", "userName"])
def test_okta_naming_the_new_user_itself_links_it_at_create(scim, db, how):
    """Okta sends managerId as it is: the CEO's own Okta id (its externalId) or login, in
    the create of the CEO itself. Linked at once, as the same value in a later PUT links
    it: it used to stay a reference naming nobody until the next write."""
    value = {"externalId": "00uceo", "userName": "CEO@ACME.EXAMPLE"}[how]
    ceo = scim.create_user("ceo@acme.example", externalId="00uceo",
                           **{ENTERPRISE: _enterprise(value)})
    assert ceo[ENTERPRISE]["manager"]["value"] == ceo["id"]
    assert _stored(db, ceo["id"]) == (ceo["id"], None)
    assert ceo["meta"]["version"] == 'W/"1"'
    again = scim.put(f"/Users/{ceo['id']}", user_body(
        "ceo@acme.example", externalId="00uceo",
        **{ENTERPRISE: _enterprise(value)}))
    assert again.status_code == 200
    assert again.get_json()["meta"]["version"] == ceo["meta"]["version"]
    events = rows(db, "SELECT type FROM outbox_events WHERE aggregate_id = :u", u=ceo["id"])
    assert [e.type for e in events] == ["user.created"]


def test_a_shared_external_id_still_names_nobody_in_particular(scim, db):
    """A value naming another live user as well is not the user itself: at the create it
    named the one user it found (as before); two users sharing the externalId name nobody
    (README), the one written no more than the other."""
    twin = scim.create_user("twin@acme.example", externalId="00usame")
    new = scim.create_user("new@acme.example", externalId="00usame",
                           **{ENTERPRISE: {"manager": {"value": "00usame"}}})
    assert _stored(db, new["id"]) == (twin["id"], None)
    third = scim.create_user("third@acme.example", externalId="00uthird")
    renamed = scim.put(f"/Users/{third['id']}", user_body(
        "third@acme.example", externalId="00usame",
        **{ENTERPRISE: {"manager": {"value": "00usame"}}}))
    assert renamed.status_code == 200, renamed.get_json()
    assert _stored(db, third["id"]) == (None, "00usame")


def test_two_users_managing_each_other(client, scim, db, tenant):
    """A's manager B, B's manager A: both taken; each chain names the other once."""
    a = scim.create_user("a@acme.example", externalId="00ua",
                         **{ENTERPRISE: {"manager": {"value": "00ub"}}})
    b = scim.create_user("b@acme.example", externalId="00ub",
                         **{ENTERPRISE: {"manager": {"value": "00ua"}}})
    assert _stored(db, a["id"]) == (b["id"], None)
    assert _stored(db, b["id"]) == (a["id"], None)
    assert _chain(client, db, tenant, a["id"]) == ["b@acme.example"]
    assert _chain(client, db, tenant, b["id"]) == ["a@acme.example"]
    # A rename of one moves the other's version (its manager's display), and only once.
    before = scim.get(f"/Users/{b['id']}").headers["ETag"]
    renamed = scim.patch(f"/Users/{a['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "displayName", "value": "Ay"}]})
    assert renamed.status_code == 200
    assert renamed.get_json()[ENTERPRISE]["manager"]["displayName"] == "b@acme.example"
    shown = scim.get(f"/Users/{b['id']}")
    assert shown.headers["ETag"] != before
    assert shown.get_json()[ENTERPRISE]["manager"]["displayName"] == "Ay"


def test_a_self_managed_user_renamed_shows_its_new_name_as_its_manager(scim):
    ceo = scim.create_user("ceo@acme.example", externalId="00uceo")
    first = _set_manager(scim, ceo["id"], ceo["id"])
    response = scim.patch(f"/Users/{ceo['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "displayName", "value": "Chief"}]})
    assert response.status_code == 200
    assert response.get_json()[ENTERPRISE]["manager"]["displayName"] == "Chief"
    shown = scim.get(f"/Users/{ceo['id']}")
    assert shown.headers["ETag"] == response.headers["ETag"] != first["meta"]["version"]
    assert scim.get(f"/Users/{ceo['id']}",
                    headers={"If-None-Match": shown.headers["ETag"]}).status_code == 304


def test_a_self_managed_leaver_hands_its_approvals_to_nobody(scim, db):
    """The leaver event names the manager to hand approvals to: not the leaver itself.
    In a two-user loop the other one is a real manager and is named."""
    ceo = scim.create_user("ceo@acme.example", externalId="00uceo")
    _set_manager(scim, ceo["id"], ceo["id"])
    off = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}
    assert scim.patch(f"/Users/{ceo['id']}", off).status_code == 200
    a = scim.create_user("a@acme.example", externalId="00ua",
                         **{ENTERPRISE: {"manager": {"value": "00ub"}}})
    scim.create_user("b@acme.example", externalId="00ub",
                     **{ENTERPRISE: {"manager": {"value": "00ua"}}})
    assert scim.patch(f"/Users/{a['id']}", off).status_code == 200
    payloads = {r.aggregate_id: _json(r.payload) for r in rows(
        db, "SELECT aggregate_id, payload FROM outbox_events WHERE type = 'user.deprovisioned'")}
    assert payloads[ceo["id"]]["manager"] is None
    assert payloads[a["id"]]["manager"]["user_name"] == "b@acme.example"


def test_deleting_and_restoring_a_self_managed_user(scim, db):
    """Its reports hear user.updated; it does not hear of itself, before or after."""
    ceo = scim.create_user("ceo@acme.example", externalId="00uceo")
    _set_manager(scim, ceo["id"], ceo["id"])
    report = scim.create_user("cto@acme.example", externalId="00ucto",
                              **{ENTERPRISE: {"manager": {"value": ceo["id"]}}})
    assert scim.delete(f"/Users/{ceo['id']}").status_code == 204
    assert scim.get(f"/Users/{ceo['id']}").status_code == 404
    assert "manager" not in scim.get(f"/Users/{report['id']}").get_json().get(ENTERPRISE, {})
    restored = scim.post("/Users", user_body("ceo@acme.example", externalId="00uceo",
                                             **{ENTERPRISE: _enterprise("00uceo")}))
    assert restored.status_code == 201, restored.get_json()
    assert restored.get_json()["id"] == ceo["id"]
    assert restored.get_json()[ENTERPRISE]["manager"]["value"] == ceo["id"]
    shown = scim.get(f"/Users/{report['id']}").get_json()
    assert shown[ENTERPRISE]["manager"]["value"] == ceo["id"]
    told = [(r.aggregate_id, _json(r.payload)["changed"]) for r in rows(
        db, "SELECT aggregate_id, payload FROM outbox_events WHERE type = 'user.updated' "
            "ORDER BY id")]
    # Its own PATCH setting the manager, then its report hidden and shown again; the
    # restore re-links the user to itself without telling it that its manager changed.
    assert told == [(ceo["id"], ["manager_id"]), (report["id"], ["manager_id"]),
                    (report["id"], ["manager_id"])]


def _renaming(scim: Scim, user_id: str, how: str, verb: str, manager: str) -> Any:
    """A PUT, or a PATCH, giving the user a new externalId (or userName) and naming
    ``manager`` as its manager in the same request."""
    new = {"externalId": ("00unew", "old@acme.example"),
           "userName": ("00uold", "new@acme.example")}[how]
    if verb == "PUT":
        return scim.put(f"/Users/{user_id}", user_body(
            new[1], externalId=new[0], **{ENTERPRISE: _enterprise(manager)}))
    return scim.patch(f"/Users/{user_id}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": how, "value": new[0] if how == "externalId" else new[1]},
        {"op": "replace", "path": f"{ENTERPRISE}:manager", "value": manager}]})


@pytest.mark.parametrize("verb", ["PUT", "PATCH"])
@pytest.mark.parametrize("how", ["externalId", "userName"])
def test_a_rename_naming_the_old_name_as_manager_does_not_link_itself(scim, db, how, verb):
    """One request renames the user (externalId "00uold" -> "00unew", or userName) and
    names its OLD name as its manager. Once written, that value names nobody: it is kept
    as a reference (``manager_ref``) and linked to the user that later takes that name.
    The lookup used to run on the row still holding the old name, and linked the user to
    itself. Its NEW name still links it to itself."""
    old = {"externalId": "00uold", "userName": "OLD@acme.example"}[how]
    user = scim.create_user("old@acme.example", externalId="00uold")
    response = _renaming(scim, user["id"], how, verb, old)
    assert response.status_code == 200, response.get_json()
    assert "manager" not in response.get_json()[ENTERPRISE]
    assert _stored(db, user["id"]) == (None, old)
    # The user that takes the old name is the manager.
    boss = scim.create_user("old@acme.example" if how == "userName" else "boss@acme.example",
                            externalId="00uold" if how == "externalId" else "00uboss")
    assert _stored(db, user["id"]) == (boss["id"], None)
    shown = scim.get(f"/Users/{user['id']}").get_json()
    assert shown[ENTERPRISE]["manager"]["value"] == boss["id"]


@pytest.mark.parametrize("verb", ["PUT", "PATCH"])
@pytest.mark.parametrize("how", ["externalId", "userName"])
def test_a_rename_naming_the_new_name_as_manager_links_itself(scim, db, how, verb):
    """The same request naming the user's NEW externalId or userName: itself, as before."""
    new = {"externalId": "00unew", "userName": "NEW@acme.example"}[how]
    user = scim.create_user("old@acme.example", externalId="00uold")
    response = _renaming(scim, user["id"], how, verb, new)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()[ENTERPRISE]["manager"]["value"] == user["id"]
    assert _stored(db, user["id"]) == (user["id"], None)
