"""An element of a multi-valued attribute sent without its ``type`` next to the typed one
with its value: RFC 7644 §3.5.2.1 has ``add`` append values "unless the value already
exists", and ``{"value": "ada@acme.example"}`` names the work email that has that address
(app/scim/elements.py). It used to be stored a second time, as was a list of one POST or
PUT body giving one element twice."""

from __future__ import annotations

import pytest

from tests.scim.support import PATCH_OP, Scim, user_body

ADA = "ada@acme.example"
WORK = {"value": ADA, "type": "work", "primary": True}


@pytest.fixture
def scim(client, tenant):
    return Scim(client, tenant)


def _patch(scim: Scim, user_id: str, *operations: dict) -> dict:
    response = scim.patch(f"/Users/{user_id}", {"schemas": [PATCH_OP],
                                               "Operations": list(operations)})
    assert response.status_code == 200, response.get_json()
    stored = scim.get(f"/Users/{user_id}").get_json()
    assert response.get_json()["emails"] == stored.get("emails")
    return stored


@pytest.mark.parametrize("added", [
    {"value": ADA},
    {"value": "ADA@Acme.Example"},  # emails.value is caseExact false (RFC 7643 §4.1.2)
    {"value": ADA, "display": "Ada at work"},
])
def test_a_value_only_email_next_to_the_typed_one_is_that_email(scim, added):
    """It merges into the work email: no second copy; type and primary stay."""
    user = scim.create_user(ADA)
    assert user["emails"] == [WORK]
    stored = _patch(scim, user["id"], {"op": "add", "path": "emails", "value": [added]})
    assert stored["emails"] == [{**WORK, **added}]


def test_path_less_add_merges_the_same_way(scim):
    user = scim.create_user(ADA)
    stored = _patch(scim, user["id"], {"op": "add", "value": {"emails": [{"value": ADA}]}})
    assert stored["emails"] == [WORK]


def test_a_value_only_primary_moves_primary_to_the_email_it_names(scim):
    """primary: true on the value-only element makes its email the primary one, and the
    other loses it (RFC 7643 §2.4), rather than adding a third email."""
    home = {"value": "ada@home.example", "type": "home"}
    user = scim.create_user(ADA, emails=[WORK, home])
    stored = _patch(scim, user["id"], {"op": "add", "path": "emails",
                                       "value": [{"value": "ada@home.example",
                                                  "primary": True}]})
    assert stored["emails"] == [{**WORK, "primary": False}, {**home, "primary": True}]


def test_a_value_only_element_with_two_typed_namesakes_is_the_first(scim):
    home = {"value": ADA, "type": "home"}
    user = scim.create_user(ADA, emails=[WORK, home])
    stored = _patch(scim, user["id"], {"op": "add", "path": "emails",
                                       "value": [{"value": ADA, "display": "Ada"}]})
    assert stored["emails"] == [{**WORK, "display": "Ada"}, home]


def test_a_typed_element_next_to_a_value_only_one_gives_it_its_type(scim):
    """The other way round: the stored email had no type, the added one says it is the work
    email. A second type of the same address is still a second element."""
    user = scim.create_user(ADA, emails=[{"value": ADA}])
    stored = _patch(scim, user["id"], {"op": "add", "path": "emails", "value": [WORK]})
    assert stored["emails"] == [WORK]
    home = {"value": ADA, "type": "home"}
    stored = _patch(scim, user["id"], {"op": "add", "path": "emails", "value": [home]})
    assert stored["emails"] == [WORK, home]


def test_typed_elements_of_one_value_and_other_types_stay_apart(scim):
    """The rule before: value and type name an element; only a missing type is no type."""
    user = scim.create_user(ADA)
    other = {"value": ADA, "type": "other"}
    stored = _patch(scim, user["id"], {"op": "add", "path": "emails", "value": [other]})
    assert stored["emails"] == [WORK, other]


def test_roles_created_typed_and_added_by_value_alone_are_not_doubled(scim):
    """Entra creates app roles typed; an add naming one by value alone is that role."""
    admin = {"value": "Admin", "type": "WindowsAzureActiveDirectoryRole", "primary": False}
    user = scim.create_user(ADA, roles=[admin])
    response = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "Add", "path": "roles", "value": [{"value": "admin"}]}]})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["roles"] == [{**admin, "value": "admin"}]


@pytest.mark.parametrize("method", ["POST", "PUT"])
@pytest.mark.parametrize(("emails", "stored"), [
    ([WORK, {"value": ADA}], [WORK]),
    ([{"value": ADA}, WORK], [WORK]),
    ([WORK, {**WORK, "value": "ADA@acme.example"}], [{**WORK, "value": "ADA@acme.example"}]),
    ([WORK, {"value": ADA, "type": "home"}], [WORK, {"value": ADA, "type": "home"}]),
])
def test_a_body_giving_one_element_twice_stores_it_once(scim, method, emails, stored):
    """A POST or PUT list is taken as if each element were added in turn: the same rule."""
    body = user_body(ADA, emails=emails)
    if method == "POST":
        response = scim.post("/Users", body)
        assert response.status_code == 201, response.get_json()
    else:
        user = scim.create_user(ADA)
        response = scim.put(f"/Users/{user['id']}", body)
        assert response.status_code == 200, response.get_json()
    assert response.get_json()["emails"] == stored
    assert scim.get(f"/Users/{response.get_json()['id']}").get_json()["emails"] == stored


def test_two_primaries_in_one_body_are_still_refused(scim):
    """Merging does not pick a primary for the client (RFC 7643 §2.4)."""
    response = scim.post("/Users", user_body(ADA, emails=[
        WORK, {"value": "ada@home.example", "type": "home", "primary": True}]))
    assert response.status_code == 400
    assert response.get_json()["scimType"] == "invalidValue"


def test_okta_and_entra_shapes_are_unaffected(scim):
    """Okta: a PUT repeating the typed primary email and a home one; Entra: replace on
    emails[type eq "work"].value, and the filter creating the home email."""
    user = scim.create_user(ADA)
    home = {"value": "ada@home.example", "type": "home"}
    put = scim.put(f"/Users/{user['id']}", user_body(ADA, emails=[WORK, home]))
    assert put.status_code == 200, put.get_json()
    assert put.get_json()["emails"] == [WORK, home]
    stored = _patch(scim, user["id"],
                    {"op": "Replace", "path": 'emails[type eq "work"].value',
                     "value": "lovelace@acme.example"},
                    {"op": "Add", "path": 'emails[type eq "other"].value', "value": ADA})
    assert stored["emails"] == [{**WORK, "value": "lovelace@acme.example"}, home,
                                {"value": ADA, "type": "other"}]
