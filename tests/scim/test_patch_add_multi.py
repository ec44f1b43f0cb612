"""PATCH ``add`` to a multi-valued attribute adds values (RFC 7644 §3.5.2.1), for core
attributes and for attributes of extensions Roster keeps as sent (Entra's and Okta's custom
attributes), with a path, without one, and through the block's URN; a value already there is
no change ("no changes SHOULD be made"). The custom ones were replaced by the value added."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import rows
from tests.scim.support import PATCH_OP, Scim, assert_error

CUSTOM = "urn:ietf:params:scim:schemas:extension:Acme:2.0:User"


@pytest.fixture
def scim(client, tenant):
    return Scim(client, tenant)


def _patch(scim: Scim, user_id: str, *operations: dict[str, Any]) -> Any:
    return scim.patch(f"/Users/{user_id}", {"schemas": [PATCH_OP], "Operations": list(operations)})


def _custom_user(scim: Scim) -> str:
    return scim.create_user(**{CUSTOM: {"costCenters": ["cc1", "cc2"], "badge": "b1"}})["id"]


@pytest.mark.parametrize("operation", [
    {"op": "add", "path": f"{CUSTOM}:costCenters", "value": ["cc3", "cc1"]},
    {"op": "add", "path": f"{CUSTOM}:COSTCENTERS", "value": ["cc3"]},
    {"op": "add", "path": f"{CUSTOM}:costCenters", "value": "cc3"},
    {"op": "add", "value": {f"{CUSTOM}:costCenters": ["cc3", "cc2"]}},
    {"op": "add", "value": {CUSTOM: {"costCenters": ["cc3"]}}},
    {"op": "add", "path": CUSTOM, "value": {"costCenters": ["cc1", "cc3"]}},
], ids=["path", "path-other-case", "path-one-value", "pathless-key", "pathless-block",
        "block-path"])
def test_add_to_a_custom_list_appends_what_it_does_not_hold(scim, db, operation):
    user_id = _custom_user(scim)
    response = _patch(scim, user_id, operation)
    assert response.status_code == 200, response.get_json()
    expected = {"costCenters": ["cc1", "cc2", "cc3"], "badge": "b1"}
    assert response.get_json()[CUSTOM] == expected
    assert scim.get(f"/Users/{user_id}").get_json()[CUSTOM] == expected
    [row] = rows(db, "SELECT extension_data FROM users WHERE id = :i", i=user_id)
    stored = row.extension_data
    assert (stored if isinstance(stored, dict) else json.loads(stored))[CUSTOM] == expected


def test_adding_only_values_it_holds_changes_nothing(scim):
    """Not even the version: the resource is unchanged (RFC 7644 §3.5.2.1)."""
    user_id = _custom_user(scim)
    before = scim.get(f"/Users/{user_id}").get_json()
    response = _patch(scim, user_id, {"op": "add", "path": f"{CUSTOM}:costCenters",
                                      "value": ["cc2", "cc1"]})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()[CUSTOM]["costCenters"] == ["cc1", "cc2"]
    assert response.get_json()["meta"]["version"] == before["meta"]["version"]


def test_complex_custom_elements_are_compared_whole(scim):
    user_id = scim.create_user(**{CUSTOM: {"sites": [{"code": "LON", "main": True}]}})["id"]
    response = _patch(scim, user_id, {"op": "add", "path": f"{CUSTOM}:sites", "value": [
        {"code": "PAR"}, {"main": True, "code": "LON"}]})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()[CUSTOM]["sites"] == [{"code": "LON", "main": True},
                                                    {"code": "PAR"}]


def test_replace_of_a_custom_list_still_replaces_it_in_any_case(scim):
    user_id = _custom_user(scim)
    response = _patch(scim, user_id, {"op": "replace", "path": f"{CUSTOM}:CostCenters",
                                      "value": ["cc9"]},
                      {"op": "remove", "path": f"{CUSTOM}:BADGE"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()[CUSTOM] == {"costCenters": ["cc9"]}


def test_add_to_a_custom_single_value_or_a_new_attribute_sets_it(scim):
    user_id = _custom_user(scim)
    response = _patch(scim, user_id, {"op": "add", "path": f"{CUSTOM}:badge", "value": "b2"},
                      {"op": "add", "path": f"{CUSTOM}:rooms", "value": ["r1"]})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()[CUSTOM] == {"costCenters": ["cc1", "cc2"], "badge": "b2",
                                           "rooms": ["r1"]}


def test_a_custom_list_grows_to_as_many_values_as_a_core_one(scim):
    """100 elements, as emails or roles (app.scim.schema.MAX_VALUES): no unbounded growth."""
    user_id = scim.create_user(**{CUSTOM: {"tags": [f"t{i}" for i in range(99)]}})["id"]
    ok = _patch(scim, user_id, {"op": "add", "path": f"{CUSTOM}:tags", "value": ["t0", "x"]})
    assert ok.status_code == 200, ok.get_json()
    assert len(ok.get_json()[CUSTOM]["tags"]) == 100
    body = assert_error(_patch(scim, user_id, {"op": "add", "path": f"{CUSTOM}:tags",
                                               "value": ["y"]}), 400, "invalidValue")
    assert "at most 100" in body["detail"]
    assert len(scim.get(f"/Users/{user_id}").get_json()[CUSTOM]["tags"]) == 100


@pytest.mark.parametrize(("attribute", "element", "extra"), [
    ("emails", {"value": "ada@home.example", "type": "home"}, None),
    ("phoneNumbers", {"value": "+44 1", "type": "work"}, {"value": "+44 2", "type": "home"}),
    ("addresses", {"locality": "London", "type": "work"}, {"locality": "Paris", "type": "home"}),
    ("roles", {"value": "buyer"}, {"value": "approver"}),
    ("entitlements", {"value": "e1"}, {"value": "e2"}),
])
@pytest.mark.parametrize("pathless", [False, True])
def test_add_to_a_core_list_appends_and_merges_an_equal_element(scim, attribute, element,
                                                                  extra, pathless):
    """The core lists already did: pinned beside the custom ones."""
    user = scim.create_user(**({attribute: [element]} if attribute != "emails" else {}))
    first = user[attribute][-1]
    added = [element] + ([extra] if extra else [])
    operation = ({"op": "add", "value": {attribute: added}} if pathless
                 else {"op": "add", "path": attribute, "value": added})
    response = _patch(scim, user["id"], operation)
    assert response.status_code == 200, response.get_json()
    values = response.get_json()[attribute]
    if attribute == "emails":
        assert values == [*user["emails"], element]
    else:
        assert values == [first, extra]


@pytest.mark.parametrize(("value", "expected"), [
    (["cc1"], ["cc2"]),
    ("cc2", ["cc1"]),
    (["cc1", "cc2", "cc9"], None),
    (["cc9"], ["cc1", "cc2"]),
])
def test_remove_with_values_from_a_custom_list_removes_only_those(scim, value, expected):
    """Entra's legacy removal shape, as a core list takes it (remove_listed); it removed
    the whole attribute."""
    user_id = _custom_user(scim)
    response = _patch(scim, user_id, {"op": "remove", "path": f"{CUSTOM}:costCenters",
                                      "value": value})
    assert response.status_code == 200, response.get_json()
    block = scim.get(f"/Users/{user_id}").get_json()[CUSTOM]
    assert block.get("costCenters") == expected
    assert block["badge"] == "b1"


def test_remove_with_objects_names_the_objects_holding_their_members(scim):
    user_id = scim.create_user(**{CUSTOM: {"sites": [
        {"value": "LON", "type": "work"}, {"value": "PAR", "type": "home"}]}})["id"]
    response = _patch(scim, user_id, {"op": "remove", "path": f"{CUSTOM}:sites",
                                      "value": [{"value": "LON"}, {"value": "PAR",
                                                                   "type": "work"}]})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()[CUSTOM]["sites"] == [{"value": "PAR", "type": "home"}]


@pytest.mark.parametrize("value", [None, "", []])
def test_adding_nothing_to_a_custom_list_changes_nothing(scim, value):
    """As for a core list: ``add`` with no value adds none (it cleared the list)."""
    user_id = _custom_user(scim)
    response = _patch(scim, user_id, {"op": "add", "path": f"{CUSTOM}:costCenters",
                                      "value": value})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()[CUSTOM]["costCenters"] == ["cc1", "cc2"]


@pytest.mark.parametrize("operation", [
    {"op": "remove", "path": f"{CUSTOM}:costCenters"},
    {"op": "replace", "path": f"{CUSTOM}:costCenters", "value": None},
    {"op": "replace", "path": f"{CUSTOM}:costCenters", "value": []},
])
def test_remove_without_value_or_replace_with_none_clears_a_custom_list(scim, operation):
    user_id = _custom_user(scim)
    response = _patch(scim, user_id, operation)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()[CUSTOM] == {"badge": "b1"}


def test_a_remove_lists_at_most_as_many_values_as_a_list_holds(scim):
    user_id = _custom_user(scim)
    response = _patch(scim, user_id, {"op": "remove", "path": f"{CUSTOM}:costCenters",
                                      "value": [{"v": i} for i in range(101)]})
    assert "at most 100" in assert_error(response, 400, "invalidValue")["detail"]
    assert scim.get(f"/Users/{user_id}").get_json()[CUSTOM]["costCenters"] == ["cc1", "cc2"]


@pytest.mark.parametrize("path", [f'{CUSTOM}:costCenters[value eq "cc1"]',
                                  f"{CUSTOM}:badge.id", f'{CUSTOM}:sites[code eq "a:b"].main'])
def test_a_filter_or_sub_attribute_in_a_custom_path_says_so(scim, path):
    """invalidPath saying what is not supported; it said "Unknown schema" of a block the
    user has."""
    user_id = _custom_user(scim)
    body = assert_error(_patch(scim, user_id, {"op": "remove", "path": path}), 400,
                        "invalidPath")
    assert "written whole" in body["detail"]
