"""Okta replays end to end over HTTP: the SCIM 2.0 Spec Test, runtime provisioning, Group Push.

Request shapes follow Okta's developer documentation, "SCIM 2.0 protocol reference"
(https://developer.okta.com/docs/api/openapi/okta-scim/guides/scim-20/) and "Test your
SCIM API" (https://developer.okta.com/docs/guides/scim-provisioning-integration-test/),
whose Runscope suite ("Okta SCIM 2.0 Spec Test") sends the first sequence below.
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import quote

import pytest

from app.scim.recorder import flush
from tests.conftest import rows
from tests.scim.support import CORE_GROUP, CORE_USER, ERROR, PATCH_OP, Scim

LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
OKTA_HEADERS = {"User-Agent": "Okta SCIM Client 1.0.0", "Accept": "application/scim+json"}


@pytest.fixture
def okta(client, tenant):
    """A SCIM client speaking as the tenant's Okta org."""
    return Scim(client, tenant)


def _filter(expression: str) -> str:
    return quote(expression, safe="")


def okta_user(login: str, external_id: str, **extra):
    """The body of Okta's runtime create (Okta SCIM 2.0 reference, "Create the user")."""
    body = {
        "schemas": [CORE_USER], "userName": login,
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": True, "value": login, "type": "work"}],
        "displayName": "Test User", "locale": "en-US", "externalId": external_id,
        "groups": [], "password": "1mz050nq", "active": True,
    }
    body.update(extra)
    return body


def _user_row(db, user_id):
    [row] = rows(db, "SELECT * FROM users WHERE id = :id", id=user_id)
    return row


def test_spec_test_sequence(okta, db):
    """Okta SCIM 2.0 Spec Test: paging probe, empty filter, unknown id, duplicate, case."""
    created = okta.post("/Users", okta_user("Test.User@okta.local", "00ujl29u0le5T6Aj10h7"),
                        headers=OKTA_HEADERS)
    assert created.status_code == 201
    user_id = created.get_json()["id"]

    page = okta.get("/Users?count=1&startIndex=1", headers=OKTA_HEADERS)
    assert page.status_code == 200
    body = page.get_json()
    assert body["schemas"] == [LIST]
    assert (body["totalResults"], body["startIndex"], body["itemsPerPage"]) == (1, 1, 1)
    assert body["Resources"][0]["id"] == user_id

    nobody = _filter('userName eq "nobody@okta.local"')
    empty = okta.get(f"/Users?filter={nobody}&startIndex=1&count=100", headers=OKTA_HEADERS)
    assert empty.status_code == 200
    assert empty.get_json()["totalResults"] == 0
    assert empty.get_json()["Resources"] == []

    missing = okta.get(f"/Users/{uuid.uuid4()}", headers=OKTA_HEADERS)
    assert missing.status_code == 404
    assert missing.get_json()["schemas"] == [ERROR]
    assert missing.get_json()["status"] == "404"

    duplicate = okta.post("/Users", okta_user("Test.User@okta.local", "00ujl29u0le5T6Aj10h7"),
                          headers=OKTA_HEADERS)
    assert duplicate.status_code == 409
    assert duplicate.get_json()["status"] == "409"

    shouted = _filter('userName eq "TEST.USER@OKTA.LOCAL"')
    upper = okta.get(f"/Users?filter={shouted}", headers=OKTA_HEADERS)
    assert upper.status_code == 200
    assert [r["id"] for r in upper.get_json()["Resources"]] == [user_id]
    assert len(rows(db, "SELECT id FROM users")) == 1


def test_spec_test_remaining_steps(okta, client):
    """The rest of the Okta SCIM 2.0 Spec Test's steps (its Runscope export, as kept in
    BerriAI/litellm tests/scim_tests/scim_e2e_test.json): the create sent as
    ``Content-Type: application/json`` with ``Accept: application/scim+json;
    charset=utf-8``, the list and read assertions (``name``, ``emails[0].value``,
    ``active``), ``GET /Groups``, a non-numeric-looking unknown id, and the 401 probe whose
    ``Authorization`` is no bearer token: each error has ``detail``, ``status`` as a string
    and the Error schema."""
    body = {"schemas": [CORE_USER], "userName": "Spec.Test@okta.local",
            "name": {"givenName": "Spec", "familyName": "Test"},
            "emails": [{"primary": True, "value": "spec.test@okta.local", "type": "work"}],
            "displayName": "Spec Test", "active": True}
    created = okta.request("POST", "/Users", data=json.dumps(body), headers={
        "Content-Type": "application/json", "Accept": "application/scim+json; charset=utf-8"})
    assert created.status_code == 201, created.get_json()
    resource = created.get_json()
    assert (resource["active"], resource["userName"], resource["name"]["familyName"]) == \
        (True, "Spec.Test@okta.local", "Test")
    assert CORE_USER in resource["schemas"]

    listed = okta.get("/Users?count=1&startIndex=1", headers=OKTA_HEADERS).get_json()
    first = listed["Resources"][0]
    assert all(isinstance(listed[k], int) for k in ("itemsPerPage", "startIndex",
                                                     "totalResults"))
    assert (first["id"], first["name"]["givenName"], first["emails"][0]["value"],
            first["active"]) == (resource["id"], "Spec", "spec.test@okta.local", True)
    read = okta.get(f"/Users/{first['id']}", headers=OKTA_HEADERS)
    assert read.status_code == 200
    assert read.get_json()["id"] == resource["id"]

    groups = okta.get("/Groups", headers=OKTA_HEADERS)
    assert groups.status_code == 200
    assert groups.get_json()["Resources"] == []

    for response, status in (
            (okta.get("/Users/00919288221112222", headers=OKTA_HEADERS), 404),
            (client.get("/scim/v2/Users?filter=" + _filter('userName eq "SPEC.TEST@OKTA.LOCAL"'),
                        headers={**OKTA_HEADERS, "Authorization": "non-token"}), 401)):
        assert response.status_code == status
        error = response.get_json()
        assert (error["schemas"], error["status"]) == ([ERROR], str(status))
        assert error["detail"]


def test_runtime_create_keeps_external_id_and_locale_never_the_password(okta, db):
    """Okta's create (externalId, password, groups: [], locale) is stored as sent, no password."""
    response = okta.post("/Users", okta_user("jane@okta.local", "00u1abc"))
    assert response.status_code == 201
    resource = response.get_json()
    assert "password" not in resource
    assert resource.get("groups", []) == []
    row = _user_row(db, resource["id"])
    assert (row.user_name, row.external_id, row.locale, row.active) == \
        ("jane@okta.local", "00u1abc", "en-US", True)
    assert row.password_hash is None
    assert "1mz050nq" not in str(tuple(row))


def test_get_then_put_update_without_active_keeps_the_state(okta, db):
    """Okta updates as GET + PUT of the full user; a PUT omitting active flips nothing."""
    user_id = okta.post("/Users", okta_user("put@okta.local", "00uput")).get_json()["id"]
    current = okta.get(f"/Users/{user_id}").get_json()
    current["name"]["familyName"] = "Renamed"
    current.pop("active")
    current.pop("meta", None)
    response = okta.put(f"/Users/{user_id}", current)
    assert response.status_code == 200
    assert response.get_json()["active"] is True
    row = _user_row(db, user_id)
    assert (row.family_name, row.active) == ("Renamed", True)

    okta.patch(f"/Users/{user_id}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "value": {"active": False}}]})
    again = okta.get(f"/Users/{user_id}").get_json()
    again.pop("active")
    again["title"] = "Engineer"
    assert okta.put(f"/Users/{user_id}", again).status_code == 200
    row = _user_row(db, user_id)
    assert (row.title, row.active) == ("Engineer", False)


def test_pathless_patch_deactivates_and_reactivates(okta, db):
    """Okta deactivation is a path-less replace {"active": false}; reactivation the reverse."""
    user_id = okta.post("/Users", okta_user("leaver@okta.local", "00uleave")).get_json()["id"]
    for active in (False, True):
        response = okta.patch(f"/Users/{user_id}", {"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "value": {"active": active}}]})
        assert response.status_code == 200
        assert response.get_json()["active"] is active
        assert bool(_user_row(db, user_id).active) is active
    deactivations = rows(db, "SELECT action FROM audit_events WHERE subject_id = :id",
                         id=user_id)
    assert len(deactivations) >= 3  # create, deactivate, reactivate are all audited


def test_lookup_of_a_user_name_with_a_plus_sign(okta, db):
    """Okta encodes a lookup's spaces and quotes (%20, %22) but leaves a ``+`` in the value
    as it is (RFC 3986 allows it in a query; Okta's own Java SDK does the same, okta-sdk-java
    issue 839), and form decoding read it as a space: ``john+test@okta.local`` was not
    found, Okta created it, got 409 and reported a duplicate. In a filter whose spaces are
    %20 a ``+`` is a plus; a form-encoded one (``userName+eq+...``, Entra's validator, with
    a plus as %2B) still reads ``+`` as a space."""
    created = okta.post("/Users", okta_user("john+test@okta.local", "00u1plus"),
                        headers=OKTA_HEADERS)
    assert created.status_code == 201, created.get_json()
    for query in ("filter=userName%20eq%20%22john+test%40okta.local%22&startIndex=1&count=100",
                  "filter=userName%20eq%20%22John+Test@okta.local%22",
                  "filter=userName+eq+%22john%2Btest%40okta.local%22",
                  'filter=userName+eq+"john%2Btest%40okta.local"'):
        found = okta.get(f"/Users?{query}", headers=OKTA_HEADERS)
        assert found.status_code == 200, (query, found.get_json())
        assert [r["id"] for r in found.get_json()["Resources"]] == [created.get_json()["id"]], \
            query
    # A plus that means a space, in a form-encoded filter, is still one.
    spaced = okta.post("/Users", okta_user("Jo Ann", "00u2plus"), headers=OKTA_HEADERS)
    found = okta.get("/Users?filter=userName+eq+%22jo+ann%22", headers=OKTA_HEADERS)
    assert [r["id"] for r in found.get_json()["Resources"]] == [spaced.get_json()["id"]]


def test_import_pages_100_at_a_time_in_a_stable_order(okta, db):
    """Okta import walks startIndex 1, 101, 201 ... and sees every user exactly once."""
    for i in range(205):
        assert okta.post("/Users", {"schemas": [CORE_USER], "userName": f"u{i:03}@okta.local",
                                    "externalId": f"00u{i}"}).status_code == 201
    seen: list[str] = []
    start = 1
    while True:
        body = okta.get(f"/Users?startIndex={start}&count=100").get_json()
        assert body["totalResults"] == 205
        seen.extend(r["id"] for r in body["Resources"])
        if len(body["Resources"]) < 100:
            break
        start += 100
    assert len(seen) == len(set(seen)) == 205
    second = okta.get("/Users?startIndex=101&count=100").get_json()
    assert [r["id"] for r in second["Resources"]] == seen[100:200]


def test_group_push_sequence(okta, db):
    """Group Push: create, rename + member remove/add in one PATCH, replace all, DELETE."""
    ids = [okta.post("/Users", okta_user(f"gp{i}@okta.local", f"00ugp{i}")).get_json()["id"]
           for i in range(4)]
    created = okta.post("/Groups", {"schemas": [CORE_GROUP], "displayName": "Test SCIMv2",
                                    "members": [{"value": ids[0], "display": "gp0@okta.local"},
                                                {"value": ids[1],
                                                 "display": "gp1@okta.local"}]})
    assert created.status_code == 201
    group_id = created.get_json()["id"]

    response = okta.patch(f"/Groups/{group_id}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "value": {"id": group_id, "displayName": "Test SCIMv2 renamed"}},
        {"op": "remove", "path": f'members[value eq "{ids[0]}"]'},
        {"op": "add", "path": "members", "value": [{"value": ids[2],
                                                    "display": "gp2@okta.local"}]},
    ]})
    assert response.status_code in (200, 204)
    [group] = rows(db, "SELECT display_name FROM groups WHERE id = :id", id=group_id)
    assert group.display_name == "Test SCIMv2 renamed"
    members = {r.user_id for r in rows(db, "SELECT user_id FROM memberships")}
    assert members == {ids[1], ids[2]}

    response = okta.patch(f"/Groups/{group_id}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "members", "value": [{"value": ids[2]}, {"value": ids[3]}]}]})
    assert response.status_code in (200, 204)
    members = {r.user_id for r in rows(db, "SELECT user_id FROM memberships")}
    assert members == {ids[2], ids[3]}

    assert okta.delete(f"/Groups/{group_id}").status_code == 204
    assert okta.get(f"/Groups/{group_id}").status_code == 404
    assert rows(db, "SELECT * FROM memberships") == []
    assert len(rows(db, "SELECT id FROM users WHERE deleted_at IS NULL")) == 4


def test_okta_traffic_reads_as_okta_in_the_dialect_report(app, okta, db, tenant):
    """PUT updates and path-less deactivation make the report say Okta."""
    from app.scim.dialect_report import dialect_report

    user_id = okta.post("/Users", okta_user("rep@okta.local", "00urep")).get_json()["id"]
    current = okta.get(f"/Users/{user_id}").get_json()
    current.pop("meta", None)
    okta.put(f"/Users/{user_id}", current)
    okta.patch(f"/Users/{user_id}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "value": {"active": False}}]})
    flush(app)
    with db.transaction() as session:
        report = dialect_report(session, tenant.directory.id)
    assert report["dialect"] == "okta"
    assert "Okta PUT updates seen" in report["summary"]
