"""/Groups over HTTP: CRUD, membership PATCHes touching only named rows, projection."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from tests.conftest import rows
from tests.scim.support import CORE_GROUP, PATCH_OP, Scim, assert_error


@pytest.fixture
def scim(client, tenant):
    """A SCIM client for the acme tenant."""
    return Scim(client, tenant)


def _patch(scim, group_id, *operations, query=""):
    return scim.patch(f"/Groups/{group_id}{query}",
                      {"schemas": [PATCH_OP], "Operations": list(operations)})


def _members(db, group_id):
    return {r[0] for r in rows(db, "SELECT user_id FROM memberships WHERE group_id = :g",
                               g=group_id)}


def test_create_with_members_and_read_back(scim, db):
    """POST /Groups with members: 201, Location, members with display and $ref."""
    user = scim.create_user()
    response = scim.post("/Groups", {"schemas": [CORE_GROUP], "displayName": "Buyers",
                                     "members": [{"value": user["id"]}]})
    assert response.status_code == 201
    group = response.get_json()
    assert response.headers["Location"].endswith(f"/Groups/{group['id']}")
    assert response.headers["ETag"] == 'W/"1"'
    assert group["members"] == [{"value": user["id"], "type": "User",
                                 "$ref": f"http://roster.test/scim/v2/Users/{user['id']}"}]
    actions = [r[0] for r in rows(db, "SELECT action FROM audit_events WHERE subject_id = :g "
                                      "ORDER BY seq", g=group["id"])]
    assert actions == ["group:create", "membership:add"]


def test_entra_group_create_with_microsoft_schema_and_no_members(scim):
    """Entra adds its own schema URN and sends no members; that is a valid create."""
    response = scim.post("/Groups", {"schemas": [
        CORE_GROUP, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
        "displayName": "Sales", "externalId": "e-1"})
    assert response.status_code == 201, response.get_json()
    listed = scim.get('/Groups?filter=displayName eq "Sales"&excludedAttributes=members')
    assert listed.get_json()["totalResults"] == 1


def test_duplicate_display_name_is_409(scim):
    """displayName is unique per directory, case-insensitively."""
    scim.create_group("Buyers")
    assert_error(scim.post("/Groups", {"schemas": [CORE_GROUP], "displayName": "BUYERS"}),
                 409, "uniqueness")


def test_unknown_member_is_400_invalid_value_and_nothing_written(scim, db):
    """Members must be users of this directory (RFC 7644 §3.3 invalidValue), atomically."""
    response = scim.post("/Groups", {"schemas": [CORE_GROUP], "displayName": "X",
                                     "members": [{"value": "no-such-user"}]})
    assert_error(response, 400, "invalidValue")
    assert rows(db, "SELECT count(*) FROM groups")[0][0] == 0


def test_member_of_another_directory_is_rejected(scim, client, other_tenant, db):
    """A user id of another tenant is as unknown as a made-up one."""
    stranger = Scim(client, other_tenant).create_user("eve@globex.example")
    group = scim.create_group("Buyers")
    response = _patch(scim, group["id"], {"op": "add", "path": "members",
                                          "value": [{"value": stranger["id"]}]})
    assert_error(response, 400, "invalidValue")
    assert _members(db, group["id"]) == set()


def test_entra_remove_with_value_list_removes_exactly_those(scim, db):
    """Entra's legacy removal (path members + value list) must not empty the group."""
    users = [scim.create_user(f"u{i}@acme.example")["id"] for i in range(3)]
    group = scim.create_group("Buyers", users)
    response = _patch(scim, group["id"], {"op": "Remove", "path": "members",
                                          "value": [{"value": users[0]}]})
    assert response.status_code == 204
    assert _members(db, group["id"]) == set(users[1:])


def test_member_ids_match_in_any_case_as_filters_do(scim, db):
    """/Schemas says members.value is caseExact false and a filter matches it so: a PATCH
    naming a member in upper case adds and removes that user, instead of 400 unknown or a
    200 that removed nobody."""
    a, b = (scim.create_user(f"u{i}@acme.example")["id"] for i in range(2))
    group = scim.create_group("Buyers", [a.upper()])
    assert _members(db, group["id"]) == {a}
    listed = scim.get("/Groups", query_string={"filter": f'members.value eq "{a.upper()}"'})
    assert listed.get_json()["totalResults"] == 1
    assert _patch(scim, group["id"], {"op": "add", "path": "members",
                                      "value": [{"value": b.upper()}]}).status_code == 204
    assert _members(db, group["id"]) == {a, b}
    assert _patch(scim, group["id"], {"op": "remove",
                                      "path": f'members[value eq "{a.upper()}"]'}
                  ).status_code == 204
    assert _members(db, group["id"]) == {b}
    # An id that is no user is named in the error as it was sent.
    unknown = scim.post("/Groups", {"schemas": [CORE_GROUP], "displayName": "Other",
                                    "members": [{"value": a.upper()}, {"value": "NOPE-ID-X"}]})
    assert "unknown: NOPE-ID-X" in assert_error(unknown, 400, "invalidValue")["detail"]


@pytest.mark.parametrize(("path", "left"), [
    ('members[value eq "{a}" and type eq "User"]', {"b"}),
    ('members[type eq "user" and value eq "{a}"]', {"b"}),
    ('members[value eq "{a}" and type eq "Group"]', {"a", "b"}),
    ('members[type eq "Group"]', {"a", "b"}),
    ('members[value eq "{a}" or type eq "Group"]', {"b"}),
    ('members[type eq "User"]', set()),
])
def test_a_members_remove_filter_may_name_the_type(scim, db, path, left):
    """A query reads ``members[value eq "x" and type eq "User"]`` (every member is a User;
    caseExact false), but a PATCH ``remove`` with that path was 400 invalidFilter: only
    ``value eq`` was taken. Now ``type eq`` holds for every member when it names User and
    for none otherwise, as in the query."""
    ids = {"a": scim.create_user("a@acme.example")["id"],
           "b": scim.create_user("b@acme.example")["id"]}
    group = scim.create_group("Buyers", list(ids.values()))
    query = scim.get("/Groups", query_string={"filter": path.format(a=ids["a"]),
                                              "excludedAttributes": "members"})
    assert query.status_code == 200
    response = _patch(scim, group["id"], {"op": "remove", "path": path.format(a=ids["a"])})
    assert response.status_code == 204, response.get_data(as_text=True)
    assert _members(db, group["id"]) == {ids[name] for name in left}


@pytest.mark.parametrize("path", ['members[type ne "User"]', 'members[display eq "a"]',
                                  'members[type eq "User" and not (value eq "x")]'])
def test_other_members_remove_filters_stay_400(scim, db, path):
    """Members are never loaded for a PATCH: a filter on anything but ``value eq`` and
    ``type eq`` cannot be evaluated, and is refused rather than guessed."""
    a = scim.create_user("a@acme.example")["id"]
    group = scim.create_group("Buyers", [a])
    assert_error(_patch(scim, group["id"], {"op": "remove", "path": path}), 400, "invalidFilter")
    assert _members(db, group["id"]) == {a}


def test_okta_rename_and_membership_changes_in_one_patch(scim, db):
    """Okta Group Push: path-less rename plus remove by filter plus add, atomically."""
    a, b = scim.create_user("a@acme.example")["id"], scim.create_user("b@acme.example")["id"]
    group = scim.create_group("Old", [a])
    response = _patch(
        scim, group["id"],
        {"op": "replace", "value": {"id": group["id"], "displayName": "New"}},
        {"op": "remove", "path": f'members[value eq "{a}"]'},
        {"op": "add", "path": "members", "value": [{"value": b}]},
        query="?excludedAttributes=members")
    assert response.status_code == 200
    assert response.get_json()["displayName"] == "New"
    assert "members" not in response.get_json()
    assert _members(db, group["id"]) == {b}


def test_failed_patch_leaves_members_and_name_untouched(scim, db):
    """One bad member in a PATCH undoes the rename and the other adds."""
    a = scim.create_user("a@acme.example")["id"]
    group = scim.create_group("Old")
    response = _patch(scim, group["id"],
                      {"op": "replace", "path": "displayName", "value": "New"},
                      {"op": "add", "path": "members", "value": [{"value": a},
                                                                 {"value": "ghost"}]})
    assert response.status_code == 400
    assert rows(db, "SELECT display_name, version FROM groups")[0] == ("Old", 1)
    assert _members(db, group["id"]) == set()


def test_replace_members_sets_the_exact_list(scim, db):
    """replace on members (Okta) makes the members exactly the list sent."""
    users = [scim.create_user(f"u{i}@acme.example")["id"] for i in range(3)]
    group = scim.create_group("Buyers", users[:2])
    _patch(scim, group["id"], {"op": "replace", "path": "members",
                               "value": [{"value": users[1]}, {"value": users[2]}]})
    assert _members(db, group["id"]) == {users[1], users[2]}


def test_replace_members_without_a_value_is_400_and_keeps_every_member(scim, db):
    """replace MUST carry a value (RFC 7644 §3.5.2.3): a missing one emptied the group."""
    users = [scim.create_user(f"u{i}@acme.example")["id"] for i in range(2)]
    group = scim.create_group("Buyers", users)
    response = _patch(scim, group["id"], {"op": "replace", "path": "members"})
    assert response.status_code == 400
    assert response.get_json()["scimType"] == "invalidSyntax"
    assert _members(db, group["id"]) == set(users)


def test_a_member_of_type_group_is_400_in_a_patch_as_in_a_post(scim, db):
    """Groups do not nest: type Group was refused in POST but stored as a user by PATCH."""
    user = scim.create_user("a@acme.example")["id"]
    group = scim.create_group("Buyers")
    response = _patch(scim, group["id"], {"op": "add", "path": "members",
                                          "value": [{"value": user, "type": "Group"}]})
    assert response.status_code == 400
    assert response.get_json()["scimType"] == "invalidValue"
    assert _members(db, group["id"]) == set()


@pytest.mark.parametrize("member", [{"display": "Ada"}, {"value": ""}, {"value": None},
                                    {"type": "User", "display": "Ada"}])
def test_a_member_without_a_value_is_400_not_dropped(scim, db, member):
    """A member without an id names nobody: it was dropped, so POST, PUT and PATCH answered
    success for a member that was never added. Each is now 400 invalidValue, all or none."""
    user = scim.create_user("a@acme.example")["id"]
    members = [{"value": user}, member]
    created = scim.post("/Groups", {"schemas": [CORE_GROUP], "displayName": "Buyers",
                                    "members": members})
    assert (created.status_code, created.get_json()["scimType"]) == (400, "invalidValue")
    assert "'members' needs a 'value'" in created.get_json()["detail"]
    assert rows(db, "SELECT count(*) FROM groups")[0][0] == 0
    group = scim.create_group("Buyers")
    replaced = scim.put(f"/Groups/{group['id']}", {"schemas": [CORE_GROUP],
                                                    "displayName": "Buyers", "members": members})
    patched = _patch(scim, group["id"], {"op": "add", "path": "members", "value": members})
    for response in (replaced, patched):
        assert (response.status_code, response.get_json()["scimType"]) == (400, "invalidValue")
    assert _members(db, group["id"]) == set()


def test_a_display_name_of_only_spaces_is_400_as_a_blank_user_name_is(scim, db):
    """displayName is required (RFC 7643 §4.2); blanks are no name."""
    response = scim.post("/Groups", {"schemas": [CORE_GROUP], "displayName": "   "})
    assert response.status_code == 400
    assert response.get_json()["scimType"] == "invalidValue"
    assert rows(db, "SELECT count(*) FROM groups")[0][0] == 0


def test_members_display_is_returned_when_asked_for(scim):
    """members.display is returned: request (a join per member): attributes=members.display
    gives each member's displayName, else userName; a plain read leaves it out, and
    /Schemas says so."""
    ada = scim.create_user("ada@acme.example", displayName="Ada L")["id"]
    bob = scim.create_user("bob@acme.example")["id"]
    group = scim.create_group("Buyers", [ada, bob])
    asked = scim.get(f"/Groups/{group['id']}?attributes=members.display").get_json()
    assert sorted(m["display"] for m in asked["members"]) == ["Ada L", "bob@acme.example"]
    plain = scim.get(f"/Groups/{group['id']}").get_json()
    assert all("display" not in m for m in plain["members"])
    both = scim.get("/Groups?attributes=members.value,members.display").get_json()
    assert {(m["value"], m["display"]) for m in both["Resources"][0]["members"]} == {
        (ada, "Ada L"), (bob, "bob@acme.example")}
    schema = scim.get(f"/Schemas/{CORE_GROUP}").get_json()
    members = next(a for a in schema["attributes"] if a["name"] == "members")
    display = next(a for a in members["subAttributes"] if a["name"] == "display")
    assert display["returned"] == "request"


def test_put_replaces_members_and_name(scim, db):
    """PUT /Groups/{id}: displayName and members become what was sent."""
    a, b = scim.create_user("a@acme.example")["id"], scim.create_user("b@acme.example")["id"]
    group = scim.create_group("Buyers", [a])
    response = scim.put(f"/Groups/{group['id']}", {"schemas": [CORE_GROUP],
                                                   "displayName": "Approvers",
                                                   "members": [{"value": b}]})
    assert response.status_code == 200
    assert response.get_json()["displayName"] == "Approvers"
    assert _members(db, group["id"]) == {b}


def test_delete_group_is_204_and_members_stay_users(scim, db):
    """DELETE /Groups/{id}: 204, memberships gone, users kept, group:delete audited."""
    a = scim.create_user()["id"]
    group = scim.create_group("Buyers", [a])
    assert scim.delete(f"/Groups/{group['id']}").status_code == 204
    assert_error(scim.get(f"/Groups/{group['id']}"), 404)
    assert rows(db, "SELECT count(*) FROM memberships")[0][0] == 0
    assert rows(db, "SELECT count(*) FROM users")[0][0] == 1
    assert rows(db, "SELECT count(*) FROM audit_events WHERE action = 'group:delete'")[0][0] == 1
    assert rows(db, "SELECT count(*) FROM outbox_events WHERE type = 'group.deleted'")[0][0] == 1


def test_deleted_user_disappears_from_members(scim):
    """A soft-deleted user is no longer listed as a member."""
    a = scim.create_user()["id"]
    group = scim.create_group("Buyers", [a])
    scim.delete(f"/Users/{a}")
    assert "members" not in scim.get(f"/Groups/{group['id']}").get_json()


class _Statements:
    """Collects the SQL text of every statement run on an engine."""

    def __init__(self, engine):
        self.engine = engine
        self.seen: list[str] = []

    def __enter__(self):
        sa.event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc):
        sa.event.remove(self.engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany):
        self.seen.append(statement)


def test_excluding_members_never_queries_memberships(scim, db):
    """excludedAttributes=members: no statement touches the memberships table."""
    group = scim.create_group("Buyers", [scim.create_user()["id"]])
    with _Statements(db.engine) as log:
        assert scim.get(f"/Groups/{group['id']}?excludedAttributes=members").status_code == 200
        assert scim.get("/Groups?excludedAttributes=members").status_code == 200
    assert not [s for s in log.seen if "memberships" in s]


def test_adding_one_member_reads_only_that_row(scim, db):
    """Adding one member to a big group never selects the other memberships."""
    users = [scim.create_user(f"u{i}@acme.example")["id"] for i in range(30)]
    group = scim.create_group("Big", users[:29])
    with _Statements(db.engine) as log:
        response = _patch(scim, group["id"], {"op": "add", "path": "members",
                                              "value": [{"value": users[29]}]})
        assert response.status_code == 204
    touching = [s for s in log.seen if "memberships" in s]
    assert touching, "the add must write a membership row"
    for statement in touching:
        # Every statement on memberships is keyed by the named user id(s): an IN list on
        # SQLite, one array parameter (= ANY) on PostgreSQL.
        assert re.search(r"memberships\.user_id (IN|= ANY)|INSERT INTO memberships",
                         statement), statement
    assert len(_members(db, group["id"])) == 30


def test_list_users_queries_groups_in_one_batch(scim, db):
    """Listing users loads groups with one query for the page, not one per user."""
    users = [scim.create_user(f"u{i}@acme.example")["id"] for i in range(5)]
    scim.create_group("Buyers", users)
    with _Statements(db.engine) as log:
        assert scim.get("/Users").get_json()["totalResults"] == 5
    assert len([s for s in log.seen if "memberships" in s]) == 1


def test_an_idp_lookup_runs_two_statements(scim, db):
    """userName eq (what Okta and Entra send before every create): the token, and the page
    with each user's groups and grants along (app.directory.users.ATTACHED); no COUNT for
    a page that holds every match."""
    user = scim.create_user("Lookup@acme.example")
    scim.create_group("Buyers", [user["id"]])
    with _Statements(db.engine) as log:
        found = scim.get('/Users?filter=userName eq "lookup@ACME.example"').get_json()
    assert found["totalResults"] == 1
    assert [g["display"] for g in found["Resources"][0]["groups"]] == ["Buyers"]
    statements = [s for s in log.seen if s.lstrip().upper().startswith("SELECT")]
    assert len(statements) == 2, statements
    assert "directory_tokens" in statements[0]
    # The fold the unique index is on: roster_fold(x) on SQLite, lower(normalize(x, NFC)).
    assert re.search(r"(roster_fold|lower\(normalize)\(users\.user_name", statements[1])
    assert "attached_groups" in statements[1]
    assert "attached_grants" in statements[1]


def test_scim_reads_run_without_an_orm_session(scim, db):
    """Lists, the .search endpoints, GETs of one user or group and discovery read on a bare
    connection (Database.reader): no ORM session begins for them, while a write still uses
    one. The once-a-minute token stamp is a write of its own and is taken first."""
    user = scim.create_user("bare@acme.example")
    scim.create_group("Bare", [user["id"]])
    scim.get("/Users")  # stamps the token's last_used_at, if due, before counting
    began: list[object] = []

    def _count(session, _transaction, _connection) -> None:
        began.append(session)

    sa.event.listen(Session, "after_begin", _count)
    try:
        assert scim.get('/Users?filter=userName eq "BARE@acme.example"').get_json()[
            "totalResults"] == 1
        assert scim.get("/Groups?excludedAttributes=members").get_json()["totalResults"] == 1
        search = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                  "filter": 'displayName eq "Bare"'}
        assert scim.post("/Groups/.search", search).get_json()["totalResults"] == 1
        assert scim.post("/.search", {**search, "filter": 'userName sw "bare"'}).get_json()[
            "totalResults"] == 1
        assert scim.get(f"/Users/{user['id']}").get_json()["groups"][0]["display"] == "Bare"
        group = scim.get(f"/Groups/{scim.get('/Groups').get_json()['Resources'][0]['id']}")
        assert group.get_json()["members"][0]["value"] == user["id"]
        assert scim.get("/Users/no-such-id").status_code == 404
        assert scim.get("/ServiceProviderConfig").status_code == 200
        assert began == []
        replace = {"Operations": [{"op": "replace", "path": "displayName", "value": "B"}],
                   "schemas": [PATCH_OP]}
        assert scim.patch(f"/Users/{user['id']}", replace).status_code == 200
        assert len(began) == 1
    finally:
        sa.event.remove(Session, "after_begin", _count)


def test_a_member_given_by_ref_alone_is_400_naming_the_ref(scim, db):
    """A member with a ``$ref`` to one of this directory's users but no ``value`` (RFC 7643
    §4.2: ``value`` is the member's identifier) is refused, POST, PUT and PATCH alike, and
    the detail says the ``$ref`` was not read (it only asked for a 'value' before)."""
    user = scim.create_user("a@acme.example")["id"]
    members = [{"$ref": f"http://roster.test/scim/v2/Users/{user}", "type": "User"}]
    created = scim.post("/Groups", {"schemas": [CORE_GROUP], "displayName": "Buyers",
                                    "members": members})
    group = scim.create_group("Buyers")
    replaced = scim.put(f"/Groups/{group['id']}", {"schemas": [CORE_GROUP],
                                                    "displayName": "Buyers", "members": members})
    patched = _patch(scim, group["id"], {"op": "add", "path": "members", "value": members})
    for response in (created, replaced, patched):
        assert (response.status_code, response.get_json()["scimType"]) == (400, "invalidValue")
        assert "'members' needs a 'value'" in response.get_json()["detail"]
        assert "'$ref' alone is not read" in response.get_json()["detail"]
    assert rows(db, "SELECT count(*) FROM groups")[0][0] == 1
    assert _members(db, group["id"]) == set()


def test_a_group_write_moves_the_groups_version_once(scim):
    """A PUT removing one member and adding another, and a PATCH renaming the group and
    changing its members in three operations, each move the group's version once (W/"1" to
    W/"2"), as a user's (README, meta.version: a request moves each part at most once);
    each step moved it, skipping versions no client ever saw."""
    a, b = scim.create_user("a@acme.example")["id"], scim.create_user("b@acme.example")["id"]
    group = scim.create_group("Old", [a])
    assert group["meta"]["version"] == 'W/"1"'
    response = scim.put(f"/Groups/{group['id']}", {"schemas": [CORE_GROUP],
                                                   "displayName": "Older",
                                                   "members": [{"value": b}]})
    assert response.status_code == 200
    assert response.headers["ETag"] == response.get_json()["meta"]["version"] == 'W/"2"'
    response = _patch(scim, group["id"],
                      {"op": "replace", "value": {"displayName": "New"}},
                      {"op": "remove", "path": f'members[value eq "{b}"]'},
                      {"op": "add", "path": "members", "value": [{"value": a}]})
    assert response.status_code == 204
    assert response.headers["ETag"] == 'W/"3"'
    assert scim.get(f"/Groups/{group['id']}").get_json()["meta"]["version"] == 'W/"3"'


def _reads_every_membership(statement: str) -> bool:
    """A statement on memberships not keyed by the user ids it names: it reads (or writes)
    every row of the group."""
    return ("memberships" in statement and "INSERT INTO memberships" not in statement
            and not re.search(r"memberships\.user_id (IN|= ANY)", statement))


def test_a_put_changing_one_member_of_a_big_group_reads_its_members_once(scim, db):
    """Okta's PUT with the full list, one member swapped: the members are read once (the
    difference needs them), their removal and addition touch the two named rows, and the
    answer is built from that one read (it read them all a second time to render them).
    The answer lists the members in the order sent, a deleted member kept but not shown."""
    users = [scim.create_user(f"u{i}@acme.example")["id"] for i in range(31)]
    group = scim.create_group("Big", users[:30])
    assert scim.delete(f"/Users/{users[5]}").status_code == 204
    sent = list(reversed(users[1:]))
    with _Statements(db.engine) as log:
        response = scim.put(f"/Groups/{group['id']}", {
            "schemas": [CORE_GROUP], "displayName": "Big",
            "members": [{"value": u} for u in sent]})
        assert response.status_code == 200
    assert len([s for s in log.seen if _reads_every_membership(s)]) == 1, log.seen
    shown = [m["value"] for m in response.get_json()["members"]]
    assert shown == [u for u in sent if u != users[5]]
    assert _members(db, group["id"]) == set(users[1:])
    assert response.get_json() == scim.get(f"/Groups/{group['id']}").get_json() | {
        "members": response.get_json()["members"]}
    listed = scim.get(f"/Groups/{group['id']}").get_json()["members"]
    assert sorted(m["value"] for m in listed) == sorted(shown)
