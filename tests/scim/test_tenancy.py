"""Tenancy: a token of directory A never sees or changes anything of directory B."""

from __future__ import annotations

import pytest

from tests.conftest import rows
from tests.scim.support import (
    CORE_GROUP,
    ENTERPRISE,
    PATCH_OP,
    Scim,
    assert_error,
    group_body,
    user_body,
)

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


@pytest.fixture
def theirs(client, other_tenant):
    """Directory B's user and group (with the user as member)."""
    b = Scim(client, other_tenant)
    user = b.create_user("eve@globex.example")
    group = b.create_group("Globex Buyers", [user["id"]])
    return {"Users": user["id"], "Groups": group["id"]}


@pytest.fixture
def mine(client, tenant):
    """A SCIM client as directory A (acme)."""
    return Scim(client, tenant)


BODIES = {
    ("Users", "PUT"): user_body("eve@globex.example"),
    ("Groups", "PUT"): group_body("Renamed"),
    ("Users", "PATCH"): {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "value": {"active": False}}]},
    ("Groups", "PATCH"): {"schemas": [PATCH_OP], "Operations": [
        {"op": "remove", "path": "members"}]},
}


@pytest.mark.parametrize("kind", ["Users", "Groups"])
@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("if_match", [False, True])
def test_other_directory_resource_is_404_on_every_method(mine, theirs, db, kind, method,
                                                          if_match):
    """GET/PUT/PATCH/DELETE on B's id with A's token: 404, and B's rows are untouched."""
    headers = {"If-Match": 'W/"1"'} if if_match else {}
    response = mine.request(method, f"/{kind}/{theirs[kind]}", BODIES.get((kind, method)),
                            headers=headers)
    assert_error(response, 404)
    assert rows(db, "SELECT active, deleted_at FROM users")[0] == (True, None)
    assert rows(db, "SELECT display_name, version FROM groups")[0] == ("Globex Buyers", 1)
    assert rows(db, "SELECT count(*) FROM memberships")[0][0] == 1


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/Users", None),
    ("GET", "/Groups", None),
    ("GET", '/Users?filter=userName eq "eve@globex.example"', None),
    ("GET", '/Groups?filter=displayName eq "Globex Buyers"', None),
    ("POST", "/Users/.search", {"schemas": [SEARCH]}),
    ("POST", "/Groups/.search", {"schemas": [SEARCH]}),
    ("POST", "/.search", {"schemas": [SEARCH]}),
    ("POST", "/.search", {"schemas": [SEARCH], "filter": 'displayName sw "Globex"'}),
])
def test_lists_and_searches_never_show_other_directories(mine, theirs, method, path, body):
    """Lists, filters and every .search only ever return the caller's resources."""
    response = mine.request(method, path, body)
    assert response.status_code == 200
    assert response.get_json()["totalResults"] == 0


@pytest.mark.parametrize("kind", ["Users", "Groups"])
def test_filter_by_other_directory_id_finds_nothing(mine, theirs, kind):
    """Filtering on B's id is an empty list, not a hint that it exists."""
    body = mine.get(f'/{kind}?filter=id eq "{theirs[kind]}"').get_json()
    assert body["totalResults"] == 0


def test_other_directory_user_as_member_or_manager_is_rejected(mine, theirs, db):
    """B's user cannot be made a member or the manager of A's resources: a member is 400,
    a manager reference names nobody in A (kept as sent, as any unknown value, never
    linked to B's user: app/directory/managers.py)."""
    response = mine.post("/Groups", {"schemas": [CORE_GROUP], "displayName": "G",
                                     "members": [{"value": theirs["Users"]}]})
    assert_error(response, 400, "invalidValue")
    body = user_body(**{ENTERPRISE: {"manager": {"value": theirs["Users"]}}})
    created = mine.post("/Users", body)
    assert created.status_code == 201
    assert "manager" not in created.get_json().get(ENTERPRISE, {})
    assert tuple(rows(db, "SELECT manager_id, manager_ref FROM users WHERE id = :u",
                      u=created.get_json()["id"])[0]) == (None, theirs["Users"])


def test_same_user_name_in_two_directories_is_fine(mine, theirs):
    """userName uniqueness is per directory, not global."""
    assert mine.post("/Users", user_body("eve@globex.example")).status_code == 201
    assert mine.post("/Groups", group_body("Globex Buyers")).status_code == 201
