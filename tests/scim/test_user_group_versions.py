"""A user's version moves when a group write changes its ``groups``, and a group's when a
member's display changes its ``members.display`` (RFC 7644 §3.14, RFC 9110 §8.8.3, §13):
neither resource is written, yet what it shows changed, so a client's ``If-None-Match``
must get a 200 with the change (not a 304 keeping the old one) and a stale ``If-Match`` a
412."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import rows
from tests.scim.support import (
    CORE_GROUP,
    PATCH_OP,
    Scim,
    assert_error,
    at_once,
    http_call,
    live_server,
)


@pytest.fixture
def scim(client, tenant) -> Scim:
    """A SCIM client for the acme tenant."""
    return Scim(client, tenant)


def _user(scim: Scim, name: str, **extra: Any) -> str:
    return scim.create_user(f"{name}@acme.example", **extra)["id"]


def _read(scim: Scim, path: str, etag: str | None = None) -> tuple[int, str, dict]:
    headers = {"If-None-Match": etag} if etag else {}
    response = scim.get(path, headers=headers)
    body = response.get_json() if response.status_code == 200 else {}
    return response.status_code, response.headers["ETag"], body


def _patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def _members(*ids: str) -> list[dict[str, str]]:
    return [{"value": i} for i in ids]


def _groups(body: dict) -> list[tuple[str, str]]:
    return sorted((g["value"], g["display"]) for g in body.get("groups", []))


def _moved(scim: Scim, user: str, before: str) -> tuple[str, dict]:
    """GET /Users/{user} with If-None-Match: ``before`` is a 200 with a new version, which
    is then a 304; the new ETag and the body."""
    status, after, body = _read(scim, f"/Users/{user}", before)
    assert status == 200, "the user's version did not move"
    assert after != before
    assert body["meta"]["version"] == after
    assert _read(scim, f"/Users/{user}", after)[0] == 304
    return after, body


def _still(scim: Scim, user: str, etag: str) -> None:
    assert _read(scim, f"/Users/{user}", etag)[0] == 304


def test_a_group_patch_adding_or_removing_a_user_moves_only_that_users_version(scim):
    """PATCH add and remove of members: each named user's GET with its old ETag is a 200
    showing its new ``groups``; a user the PATCH did not change stays 304."""
    ada, bob = _user(scim, "ada"), _user(scim, "bob")
    group = scim.create_group("Buyers", members=[bob])["id"]
    ada_before = _read(scim, f"/Users/{ada}")[1]
    bob_before = _read(scim, f"/Users/{bob}")[1]
    assert ada_before == 'W/"1"'  # no group write moved it: the version is plain n
    path = f"/Groups/{group}"
    assert scim.patch(path, _patch({"op": "add", "path": "members",
                                    "value": _members(ada)})).status_code == 204
    ada_added, body = _moved(scim, ada, ada_before)
    assert _groups(body) == [(group, "Buyers")]
    _still(scim, bob, bob_before)
    assert scim.patch(path, _patch({"op": "remove", "path": f'members[value eq "{ada}"]'})
                      ).status_code == 204
    _, body = _moved(scim, ada, ada_added)
    assert _groups(body) == []
    _still(scim, bob, bob_before)


def test_a_group_patch_replacing_members_moves_the_removed_and_added_only(scim):
    """PATCH replace of members (and remove of all): the users it added or removed move,
    one it kept does not."""
    ada, bob, cy = _user(scim, "ada"), _user(scim, "bob"), _user(scim, "cy")
    group = scim.create_group("Buyers", members=[ada, bob])["id"]
    before = {u: _read(scim, f"/Users/{u}")[1] for u in (ada, bob, cy)}
    assert scim.patch(f"/Groups/{group}", _patch(
        {"op": "replace", "path": "members", "value": _members(bob, cy)})).status_code == 204
    assert _groups(_moved(scim, ada, before[ada])[1]) == []
    _still(scim, bob, before[bob])
    cy_now, body = _moved(scim, cy, before[cy])
    assert _groups(body) == [(group, "Buyers")]
    bob_now = before[bob]
    assert scim.patch(f"/Groups/{group}", _patch({"op": "remove", "path": "members"})
                      ).status_code == 204
    _moved(scim, bob, bob_now)
    _moved(scim, cy, cy_now)


def test_a_group_put_moves_its_changed_members_and_on_a_rename_all(scim):
    """PUT with new members moves the added and removed users; a PUT renaming the group
    moves every member (their ``groups.display``)."""
    ada, bob, cy = _user(scim, "ada"), _user(scim, "bob"), _user(scim, "cy")
    group = scim.create_group("Buyers", members=[ada, bob])["id"]
    before = {u: _read(scim, f"/Users/{u}")[1] for u in (ada, bob, cy)}
    put = {"schemas": [CORE_GROUP], "displayName": "Buyers", "members": _members(bob, cy)}
    assert scim.put(f"/Groups/{group}", put).status_code == 200
    _moved(scim, ada, before[ada])
    _still(scim, bob, before[bob])
    cy_now = _moved(scim, cy, before[cy])[0]
    put["displayName"] = "Sellers"
    assert scim.put(f"/Groups/{group}", put).status_code == 200
    for user, etag in ((bob, before[bob]), (cy, cy_now)):
        assert _groups(_moved(scim, user, etag)[1]) == [(group, "Sellers")]
    _still(scim, ada, _read(scim, f"/Users/{ada}")[1])


def test_a_group_rename_by_patch_moves_every_member_and_lastmodified(scim):
    """PATCH displayName: every member's version and meta.lastModified move, and a filter
    on meta.lastModified finds them (an incremental sync sees the new group name)."""
    ada, bob, other = _user(scim, "ada"), _user(scim, "bob"), _user(scim, "zed")
    group = scim.create_group("Buyers", members=[ada, bob])["id"]
    scim.create_group("Others", members=[other])
    before = {u: _read(scim, f"/Users/{u}") for u in (ada, bob, other)}
    time.sleep(0.01)
    assert scim.patch(f"/Groups/{group}", _patch(
        {"op": "replace", "path": "displayName", "value": "Sellers"})).status_code == 204
    for user in (ada, bob):
        _, body = _moved(scim, user, before[user][1])
        assert _groups(body) == [(group, "Sellers")]
        assert body["meta"]["lastModified"] > before[user][2]["meta"]["lastModified"]
    _still(scim, other, before[other][1])
    since = _read(scim, f"/Users/{ada}")[2]["meta"]["lastModified"]
    found = scim.get(f'/Users?filter=meta.lastModified ge "{since}"').get_json()
    assert sorted(u["id"] for u in found["Resources"]) == sorted([ada, bob])
    # The list page shows the same versions as GET /Users/{id}.
    page = {u["id"]: u["meta"]["version"] for u in scim.get("/Users").get_json()["Resources"]}
    for user in (ada, bob, other):
        assert page[user] == _read(scim, f"/Users/{user}")[1]


def test_a_group_created_with_members_moves_their_versions(scim):
    """POST /Groups with members: they now show the group, so their old ETags are 200s."""
    ada, bob = _user(scim, "ada"), _user(scim, "bob")
    before = {u: _read(scim, f"/Users/{u}")[1] for u in (ada, bob)}
    group = scim.create_group("Buyers", members=[ada])["id"]
    assert _groups(_moved(scim, ada, before[ada])[1]) == [(group, "Buyers")]
    _still(scim, bob, before[bob])


def test_a_group_delete_moves_its_members_versions(scim):
    """DELETE /Groups/G: its members no longer show it; their old ETags are 200s."""
    ada, bob = _user(scim, "ada"), _user(scim, "bob")
    group = scim.create_group("Buyers", members=[ada])["id"]
    before = {u: _read(scim, f"/Users/{u}")[1] for u in (ada, bob)}
    assert scim.delete(f"/Groups/{group}").status_code == 204
    assert _groups(_moved(scim, ada, before[ada])[1]) == []
    _still(scim, bob, before[bob])


@pytest.mark.parametrize("method", ["PATCH", "PUT", "DELETE"])
def test_a_stale_user_version_after_a_group_write_is_412(scim, db, method):
    """If-Match with the user's version read before a group added it: 412 on the user's
    PATCH, PUT and DELETE, which change nothing; with the current version they apply."""
    ada = _user(scim, "ada")
    group = scim.create_group("Buyers")["id"]
    stale = _read(scim, f"/Users/{ada}")[1]
    assert scim.patch(f"/Groups/{group}", _patch(
        {"op": "add", "path": "members", "value": _members(ada)})).status_code == 204
    body = {"PATCH": _patch({"op": "replace", "path": "title", "value": "Boss"}),
            "PUT": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": "ada@acme.example", "title": "Boss"},
            "DELETE": None}[method]
    path = f"/Users/{ada}"
    assert_error(scim.request(method, path, body, headers={"If-Match": stale}), 412)
    assert rows(db, "SELECT title, deleted_at FROM users WHERE id = :u", u=ada) == [
        (None, None)]
    current = _read(scim, path)[1]
    assert current != stale
    assert scim.request(method, path, body, headers={"If-Match": current}
                        ).status_code in (200, 204)


def test_a_member_added_again_or_a_no_op_moves_nothing(scim):
    """A PATCH adding a user who is a member already, or renaming a group to its own name,
    changes no ``groups``: the user's version stays (304)."""
    ada = _user(scim, "ada")
    group = scim.create_group("Buyers", members=[ada])["id"]
    before = _read(scim, f"/Users/{ada}")[1]
    assert scim.patch(f"/Groups/{group}", _patch(
        {"op": "add", "path": "members", "value": _members(ada)},
        {"op": "replace", "path": "displayName", "value": "Buyers"})).status_code == 204
    _still(scim, ada, before)


def test_a_members_display_change_moves_the_groups_version(scim):
    """``members.display`` is the member's displayName (else userName): a group read with
    ``attributes=members.display`` and If-None-Match is a 200 with the new name once the
    member's displayName changes; a change of anything else of the member stays 304."""
    ada = _user(scim, "ada", displayName="Ada")
    group = scim.create_group("Buyers", members=[ada])["id"]
    path = f"/Groups/{group}?attributes=members.display"
    status, before, body = _read(scim, path)
    assert [m.get("display") for m in body["members"]] == ["Ada"]
    assert scim.patch(f"/Users/{ada}", _patch(
        {"op": "replace", "path": "title", "value": "Boss"})).status_code == 200
    assert _read(scim, path, before)[0] == 304
    assert scim.patch(f"/Users/{ada}", _patch(
        {"op": "replace", "path": "displayName", "value": "Ada L."})).status_code == 200
    status, after, body = _read(scim, path, before)
    assert status == 200
    assert after != before
    assert [m.get("display") for m in body["members"]] == ["Ada L."]
    assert _read(scim, path, after)[0] == 304
    # Without a displayName the display is the userName: renaming the user moves it too.
    assert scim.patch(f"/Users/{ada}", _patch({"op": "remove", "path": "displayName"})
                      ).status_code == 200
    status, shown, body = _read(scim, path, after)
    assert status == 200
    assert [m.get("display") for m in body["members"]] == ["ada@acme.example"]
    assert scim.patch(f"/Users/{ada}", _patch(
        {"op": "replace", "path": "userName", "value": "lovelace@acme.example"})
    ).status_code == 200
    status, _, body = _read(scim, path, shown)
    assert status == 200
    assert [m.get("display") for m in body["members"]] == ["lovelace@acme.example"]


def test_a_single_member_add_updates_only_that_users_row(scim, db):
    """Adding one member to a group of many bumps that one user's row, in one UPDATE
    (the other members are neither read nor written for it)."""
    from tests.statements import captured

    members = [_user(scim, f"m{i}") for i in range(5)]
    ada = _user(scim, "ada")
    group = scim.create_group("Buyers", members=members)["id"]
    with captured(db.engine, lambda s: s.lstrip().upper().startswith("UPDATE USERS")
                  ) as updates:
        assert scim.patch(f"/Groups/{group}", _patch(
            {"op": "add", "path": "members", "value": _members(ada)})).status_code == 204
    assert len(updates) == 1, updates
    assert "groups_version" in updates[0][0]
    assert ada in str(updates[0][1])
    assert not any(m in str(updates[0][1]) for m in members)


def test_concurrent_group_writes_adding_one_user_each_move_its_version(app, db, tenant):
    """Two PATCHes adding the same user to two groups at once (PostgreSQL: both hold its
    row in turn): the user's version moved twice, none lost, and GET shows both groups."""
    with live_server(app) as url:
        status, user = http_call(url, tenant.token, "POST", "/Users", {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ada@acme.example"})
        assert status == 201
        groups = []
        for name in ("G1", "G2"):
            status, group = http_call(url, tenant.token, "POST", "/Groups", {
                "schemas": [CORE_GROUP], "displayName": name})
            assert status == 201
            groups.append(group["id"])
        results = at_once([
            (lambda g=g: http_call(url, tenant.token, "PATCH", f"/Groups/{g}", _patch(
                {"op": "add", "path": "members", "value": _members(user["id"])})))
            for g in groups])
        assert [s for s, _ in results] == [204, 204], results
        status, shown = http_call(url, tenant.token, "GET", f"/Users/{user['id']}")
    assert status == 200
    assert shown["meta"]["version"] == 'W/"1.2"'
    assert sorted(g["value"] for g in shown["groups"]) == sorted(groups)
    assert rows(db, "SELECT groups_version FROM users WHERE id = :u", u=user["id"]) == [(2,)]
