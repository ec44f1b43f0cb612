"""An extension block carrying a ``schemas`` member of its own (``"<urn>": {"schemas":
[...], "department": "x"}``, as some clients send it): RFC 7643 §3 lists schemas only at
the resource's top level, and Roster ignores the repeated one in POST, PUT and PATCH alike
(app.scim.values.extension_members). It was 400 in POST and PUT, ignored in PATCH."""

from __future__ import annotations

import pytest

from app.scim import dialect
from app.scim.recorder import flush
from tests.conftest import rows
from tests.scim.support import CORE_USER, ENTERPRISE, PATCH_OP, Scim, user_body

CUSTOM = "urn:ietf:params:scim:schemas:extension:Acme:2.0:User"


@pytest.fixture
def scim(client, tenant):
    return Scim(client, tenant)


def _block(**members: str) -> dict:
    return {"schemas": [ENTERPRISE], **members}


def _stored(scim: Scim, user_id: str) -> dict:
    user = scim.get(f"/Users/{user_id}").get_json()
    assert "schemas" not in user[ENTERPRISE]
    return user


def test_post_takes_an_enterprise_block_with_its_own_schemas(app, scim, db, tenant):
    response = scim.post("/Users", user_body(**{ENTERPRISE: _block(department="Sales")}))
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created[ENTERPRISE] == {"department": "Sales"}
    assert created["schemas"] == [CORE_USER, ENTERPRISE]
    assert _stored(scim, created["id"])[ENTERPRISE] == {"department": "Sales"}
    flush(app)  # the dialect report counts the note
    [note] = rows(db, "SELECT note FROM scim_dialect_notes WHERE directory_id = :d",
                  d=tenant.directory.id)
    assert note.note == dialect.EXTENSION_SCHEMAS


def test_put_takes_it_too_in_any_case(scim):
    user = scim.create_user()
    block = {"SCHEMAS": [ENTERPRISE], "department": "Ops", "costCenter": "CC-9"}
    response = scim.put(f"/Users/{user['id']}", user_body(**{ENTERPRISE: block}))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()[ENTERPRISE] == {"department": "Ops", "costCenter": "CC-9"}
    assert _stored(scim, user["id"])[ENTERPRISE]["department"] == "Ops"


@pytest.mark.parametrize("operation", [
    {"op": "add", "value": {ENTERPRISE: _block(department="Legal")}},
    {"op": "replace", "value": {ENTERPRISE: _block(department="Legal")}},
    {"op": "replace", "path": ENTERPRISE, "value": _block(department="Legal")},
    {"op": "add", "path": ENTERPRISE, "value": _block(department="Legal")},
])
def test_patch_takes_it_as_post_and_put_do(scim, operation):
    user = scim.create_user()
    response = scim.patch(f"/Users/{user['id']}",
                          {"schemas": [PATCH_OP], "Operations": [operation]})
    assert response.status_code == 200, response.get_json()
    assert _stored(scim, user["id"])[ENTERPRISE] == {"department": "Legal",
                                                      "costCenter": "CC-1"}


def test_whatever_it_holds_it_is_not_an_attribute(scim):
    """Not checked against the top level either: it says nothing the top level does not."""
    body = user_body(**{ENTERPRISE: {"schemas": "nonsense", "department": "R&D"}})
    response = scim.post("/Users", body)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()[ENTERPRISE] == {"department": "R&D"}


def test_an_unknown_extension_block_loses_it_too(scim):
    """The same rule for a block Roster keeps as sent (Entra's custom attributes): its
    attributes are kept, its repeated ``schemas`` is not, as a PATCH naming the block did."""
    body = user_body(**{CUSTOM: {"schemas": [CUSTOM], "badge": "B-7"}})
    response = scim.post("/Users", body)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()[CUSTOM] == {"badge": "B-7"}
    patched = scim.patch(f"/Users/{response.get_json()['id']}", {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": CUSTOM,
                        "value": {"schemas": [CUSTOM], "badge": "B-8"}}]})
    assert patched.status_code == 200, patched.get_json()
    assert patched.get_json()[CUSTOM] == {"badge": "B-8"}


@pytest.mark.parametrize("block", [["x"], "x", 7])
def test_a_block_that_is_no_object_is_still_invalid_value(scim, block):
    response = scim.post("/Users", user_body(**{ENTERPRISE: block}))
    assert response.status_code == 400
    assert response.get_json()["scimType"] == "invalidValue"
    user = scim.create_user("b@acme.example")
    response = scim.patch(f"/Users/{user['id']}", {
        "schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": ENTERPRISE,
                                               "value": block}]})
    assert response.status_code == 400
    assert response.get_json()["scimType"] == "invalidValue"


@pytest.mark.parametrize("urn", [ENTERPRISE, ENTERPRISE.upper(), CUSTOM, CUSTOM.lower()])
@pytest.mark.parametrize("op", ["add", "replace", "remove"])
def test_a_patch_path_naming_a_blocks_schemas_is_ignored_too(app, scim, db, tenant, urn, op):
    """``<urn>:schemas`` names the member POST, PUT and a PATCH value ignore (RFC 7644
    §3.5.2 gives no attribute to act on): it was 400 invalidPath for the enterprise block,
    and for a custom one stored an empty block that ``schemas`` then listed."""
    user = scim.create_user(**{CUSTOM: {"badge": "B-7"}})
    operation = {"op": op, "path": f"{urn}:schemas"}
    if op != "remove":
        operation["value"] = [urn]
    response = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_OP], "Operations": [
        operation, {"op": "replace", "path": "title", "value": "Engineer"}]})
    assert response.status_code == 200, response.get_json()
    patched = response.get_json()
    assert patched["title"] == "Engineer"
    assert patched[ENTERPRISE] == user[ENTERPRISE]
    assert patched[CUSTOM] == {"badge": "B-7"}
    assert patched["schemas"] == [CORE_USER, ENTERPRISE, CUSTOM]
    assert scim.get(f"/Users/{user['id']}").get_json() == patched
    flush(app)
    notes = rows(db, "SELECT note FROM scim_dialect_notes WHERE directory_id = :d",
                 d=tenant.directory.id)
    assert dialect.EXTENSION_SCHEMAS in {n.note for n in notes}


@pytest.mark.parametrize("urn", [ENTERPRISE, CUSTOM])
def test_a_pathless_key_naming_a_blocks_schemas_is_ignored_too(scim, urn):
    user = scim.create_user()
    response = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "add", "value": {f"{urn}:schemas": [urn], f"{ENTERPRISE}:department": "Ops"}}]})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()[ENTERPRISE] == {"department": "Ops", "costCenter": "CC-1"}
    assert response.get_json()["schemas"] == [CORE_USER, ENTERPRISE]


@pytest.mark.parametrize("path", [f"{ENTERPRISE}:schemas.value",
                                  f'{ENTERPRISE}:schemas[value eq "x"]'])
def test_more_than_a_blocks_schemas_is_still_invalid_path(scim, path):
    user = scim.create_user()
    response = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "add", "path": path, "value": "x"}]})
    assert response.status_code == 400
    assert response.get_json()["scimType"] == "invalidPath"
