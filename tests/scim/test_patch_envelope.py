"""A PATCH naming the resource's envelope: ``id``, ``meta`` and ``schemas``.

A path-less value is a partial resource (RFC 7644 §3.5.2.1, §3.5.2.3): IdPs echo the
envelope in it (Okta Group Push repeats the ``id``; others the ``meta``), which Roster
ignores as a PUT ignores readOnly values (RFC 7644 §3.5.1); an ``id`` that is not the
resource's (``id`` is caseExact, RFC 7643 §3.1, and ``/Users/<ID IN CAPITALS>`` is 404) is 400
mutability (RFC 7644 §3.5.2). The path ``schemas`` is ignored as the key ``schemas`` in a
path-less value is (it was 400 invalidPath): Roster lists the schemas of the blocks present.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.scim.support import CORE_GROUP, CORE_USER, ENTERPRISE, PATCH_OP, Scim, assert_error


@pytest.fixture
def scim(client, tenant):
    return Scim(client, tenant)


def _patch(scim: Scim, where: str, *operations: dict[str, Any]) -> Any:
    return scim.patch(where, {"schemas": [PATCH_OP], "Operations": list(operations)})


@pytest.mark.parametrize("extra", [
    {"schemas": [CORE_USER]},
    {"meta": {"resourceType": "User", "version": 'W/"1"'}},
    {"META": {"resourceType": "User", "lastModified": "2020-01-01T00:00:00Z"}},
    {"id": "same"},
], ids=["schemas", "meta", "meta-capitals-stale", "same-id"])
def test_a_pathless_value_may_echo_the_envelope(scim, extra):
    user = scim.create_user()
    if "id" in extra:
        extra = {"id": user["id"]}
    response = _patch(scim, f"/Users/{user['id']}",
                      {"op": "replace", "value": {**extra, "title": "CTO"}})
    assert response.status_code == 200, response.get_json()
    after = scim.get(f"/Users/{user['id']}").get_json()
    assert after["title"] == "CTO"
    assert after["id"] == user["id"]
    assert after["meta"]["created"] == user["meta"]["created"]
    assert after["schemas"] == [CORE_USER, ENTERPRISE]


def test_a_group_pathless_value_may_echo_id_and_meta(scim):
    """Okta Group Push: ``{"id": ..., "displayName": ...}``, here with its ``meta`` too."""
    group = scim.create_group("Sales")
    response = _patch(scim, f"/Groups/{group['id']}", {"op": "replace", "value": {
        "id": group["id"], "displayName": "Sales EMEA", "meta": group["meta"],
        "schemas": [CORE_GROUP]}})
    assert response.status_code in (200, 204), response.get_data(as_text=True)
    assert scim.get(f"/Groups/{group['id']}").get_json()["displayName"] == "Sales EMEA"


@pytest.mark.parametrize("other", ["upper", "another"])
def test_another_id_in_a_pathless_value_is_mutability(scim, other):
    user = scim.create_user()
    other_id = user["id"].upper() if other == "upper" else "another"
    assert scim.get(f"/Users/{other_id}").status_code == 404
    body = assert_error(_patch(scim, f"/Users/{user['id']}", {
        "op": "replace", "value": {"id": other_id, "title": "CTO"}}), 400, "mutability")
    assert "'id' is readOnly" in body["detail"]
    assert "title" not in scim.get(f"/Users/{user['id']}").get_json()


@pytest.mark.parametrize("path", ["id", "meta", "meta.created"])
def test_a_path_naming_id_or_meta_is_still_mutability(scim, path):
    """A path asks to write the attribute itself (RFC 7644 §3.5.2)."""
    user = scim.create_user()
    value = user["id"] if path == "id" else user["meta"] if path == "meta" else "x"
    assert_error(_patch(scim, f"/Users/{user['id']}",
                        {"op": "replace", "path": path, "value": value}), 400, "mutability")


@pytest.mark.parametrize("operation", [
    {"op": "replace", "path": "schemas", "value": [CORE_USER]},
    {"op": "add", "path": "SCHEMAS", "value": ["urn:x:y:z"]},
    {"op": "remove", "path": "schemas"},
    {"op": "replace", "path": f"{CORE_USER}:schemas", "value": [CORE_USER]},
])
def test_a_path_naming_schemas_is_ignored_as_the_pathless_key_is(scim, operation):
    user = scim.create_user()
    response = _patch(scim, f"/Users/{user['id']}", operation,
                      {"op": "replace", "path": "title", "value": "CTO"})
    assert response.status_code == 200, response.get_json()
    after = scim.get(f"/Users/{user['id']}").get_json()
    assert after["schemas"] == [CORE_USER, ENTERPRISE]
    assert after["title"] == "CTO"


def test_a_filtered_schemas_path_is_still_invalid_path(scim):
    user = scim.create_user()
    assert_error(_patch(scim, f"/Users/{user['id']}", {
        "op": "remove", "path": 'schemas[value eq "x"]'}), 400, "invalidPath")
