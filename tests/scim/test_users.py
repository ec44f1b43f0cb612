"""/Users over HTTP: create, read, replace, patch, delete, lists, projection, lifecycle."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from app.directory.organizations import add_unit
from app.directory.users import verify_password
from app.models import Grant, Organization
from tests.conftest import OPERATOR, rows
from tests.scim.support import (
    CORE_GROUP,
    CORE_USER,
    ENTERPRISE,
    PATCH_OP,
    SCIM,
    Scim,
    assert_error,
    user_body,
)

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ROSTER = "urn:roster:params:scim:schemas:extension:access:2.0:User"


@pytest.fixture
def scim(client, tenant):
    """A SCIM client for the acme tenant."""
    return Scim(client, tenant)


def test_create_answers_201_with_location_etag_and_meta(scim, db):
    """POST /Users: 201, Location, ETag, full meta, values as sent; audit + outbox rows."""
    response = scim.post("/Users", user_body())
    assert response.status_code == 201
    assert response.mimetype == SCIM
    user = response.get_json()
    assert response.headers["Location"] == user["meta"]["location"]
    assert response.headers["ETag"] == user["meta"]["version"] == 'W/"1"'
    assert user["meta"]["location"] == f"http://roster.test/scim/v2/Users/{user['id']}"
    assert user["meta"]["resourceType"] == "User"
    assert user["meta"]["created"].endswith("Z")
    assert user["meta"]["lastModified"]
    assert user["userName"] == "ada@acme.example"
    assert user[ENTERPRISE] == {"department": "Engineering", "costCenter": "CC-1"}
    stored = rows(db, "SELECT user_name, primary_email, department, password_hash FROM users")
    assert [tuple(r) for r in stored] == [("ada@acme.example", "ada@acme.example",
                                           "Engineering", None)]
    assert [r[0] for r in rows(db, "SELECT action FROM audit_events WHERE subject_id = :i",
                               i=user["id"])] == ["user:create"]
    assert [r[0] for r in rows(db, "SELECT type FROM outbox_events WHERE aggregate_id = :i",
                               i=user["id"])] == ["user.created"]


def test_attribute_names_are_case_insensitive_and_values_kept_as_sent(scim):
    """Entra's capitalised names are accepted; values (case, spacing) are not rewritten."""
    body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "UserName": "Grace.Hopper@Acme.example", "DisplayName": "Grace  Hopper",
            "Active": "True", "Name": {"GivenName": "Grace"}}
    response = scim.post("/Users", body)
    assert response.status_code == 201, response.get_json()
    user = response.get_json()
    assert user["userName"] == "Grace.Hopper@Acme.example"
    assert user["displayName"] == "Grace  Hopper"
    assert user["name"] == {"givenName": "Grace"}
    assert user["active"] is True


def test_password_is_accepted_never_returned_and_not_stored_by_default(scim, db):
    """password is writeOnly/returned never; without the setting nothing is stored."""
    user = scim.create_user(password="S3cret!pass")
    assert "password" not in user
    assert "password" not in scim.get(f"/Users/{user['id']}").get_json()
    assert rows(db, "SELECT password_hash FROM users")[0][0] is None


def test_password_hash_is_scrypt_when_the_setting_is_on(app, scim, db):
    """scim.store_password_hash stores a verifiable scrypt hash, never the clear text."""
    app.config["ROSTER"]["scim"]["store_password_hash"] = True
    try:
        scim.create_user(password="S3cret!pass")
    finally:
        app.config["ROSTER"]["scim"]["store_password_hash"] = False
    stored = rows(db, "SELECT password_hash FROM users")[0][0]
    assert stored.startswith("scrypt$")
    assert "S3cret" not in stored
    assert verify_password("S3cret!pass", stored)
    assert not verify_password("wrong", stored)


def test_duplicate_user_name_in_other_case_is_409_uniqueness(scim):
    """userName is caseExact=false: a case-different duplicate is 409 uniqueness."""
    scim.create_user("ada@acme.example")
    assert_error(scim.post("/Users", user_body("ADA@ACME.example")), 409, "uniqueness")


def test_get_unknown_id_is_404_with_status_string(scim):
    """Okta's spec test: an unknown id is 404 with status "404"."""
    assert_error(scim.get("/Users/00000000-0000-4000-8000-000000000000"), 404)


def test_put_replaces_and_omitting_active_keeps_state(scim, db):
    """Okta PUT without active must not flip the user; other attributes are replaced."""
    user = scim.create_user()
    scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "value": {"active": False}}]})
    body = user_body(displayName="Ada L.")
    del body["active"]
    del body[ENTERPRISE]
    response = scim.put(f"/Users/{user['id']}", body)
    assert response.status_code == 200, response.get_json()
    updated = response.get_json()
    assert updated["active"] is False
    assert updated["displayName"] == "Ada L."
    assert ENTERPRISE not in updated
    assert rows(db, "SELECT active, status FROM users")[0] == (False, "deprovisioned")


def test_patch_active_false_then_true_goes_through_lifecycle(scim, db):
    """Okta deactivation/reactivation: path-less PATCH {"active": false/true}."""
    user = scim.create_user()
    off = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "value": {"active": False}}]})
    assert off.status_code == 200
    assert off.get_json()["active"] is False
    assert rows(db, "SELECT status FROM users")[0][0] == "deprovisioned"
    listed = scim.get('/Users?filter=userName eq "ada@acme.example"').get_json()
    assert listed["totalResults"] == 1  # an inactive user stays filterable
    on = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "value": {"active": True}}]})
    assert on.get_json()["active"] is True
    actions = [r[0] for r in rows(db, "SELECT action FROM audit_events WHERE subject_id = :i "
                                      "ORDER BY seq", i=user["id"])]
    assert actions == ["user:create", "user:deprovision", "user:reactivate"]


def test_patch_is_all_or_nothing(scim, db):
    """A PATCH whose second operation is invalid changes nothing at all."""
    user = scim.create_user()
    response = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "displayName", "value": "Changed"},
        {"op": "replace", "path": "id", "value": "x"}]})
    assert response.status_code == 400
    assert rows(db, "SELECT display_name, version FROM users")[0] == (None, 1)


def test_patch_sub_attribute_of_every_email(scim):
    """``remove emails.type`` (an attrPath without a filter, RFC 7644 §3.5.2) drops the type
    of every email, stored and answered; a second primary is refused, nothing written."""
    user = scim.create_user(emails=[{"value": "ada@acme.example", "type": "work",
                                     "primary": True},
                                    {"value": "ada@home.example", "type": "home"}])
    response = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "remove", "path": "emails.type"}]})
    assert response.status_code == 200, response.get_json()
    expected = [{"value": "ada@acme.example", "primary": True}, {"value": "ada@home.example"}]
    assert response.get_json()["emails"] == expected
    assert scim.get(f"/Users/{user['id']}").get_json()["emails"] == expected
    refused = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "emails.display", "value": "Ada"},
        {"op": "replace", "path": "emails.primary", "value": True}]})
    assert_error(refused, 400, "invalidValue")
    assert scim.get(f"/Users/{user['id']}").get_json()["emails"] == expected


def test_an_element_type_compares_in_any_case(scim):
    """``type`` of emails, phoneNumbers, roles ... is caseExact false (RFC 7643 §4.1.2, and
    our /Schemas), as ``value`` is: adding ``{"value": "ADA@acme.example", "type": "Work"}``
    to a user with that work email stored a second copy (RFC 7644 §3.5.2.1: a value
    already there changes nothing), and a listed removal naming type "WORK" removed nothing."""
    user = scim.create_user()
    response = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "add", "path": "emails", "value": [
            {"value": "ADA@acme.example", "type": "Work", "display": "Ada"}]},
        {"op": "add", "path": "phoneNumbers", "value": [{"value": "+1 555", "type": "mobile"}]}]})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["emails"] == [
        {"primary": True, "type": "Work", "value": "ADA@acme.example", "display": "Ada"}]
    response = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "remove", "path": "phoneNumbers",
         "value": [{"value": "+1 555", "type": "MOBILE"}]}]})
    assert response.status_code == 200, response.get_json()
    assert "phoneNumbers" not in response.get_json()


def test_delete_is_204_then_gone_and_name_reusable(scim, db):
    """DELETE: 204, then 404 everywhere at once; the userName may be provisioned again."""
    user = scim.create_user()
    response = scim.delete(f"/Users/{user['id']}")
    assert response.status_code == 204
    assert_error(scim.get(f"/Users/{user['id']}"), 404)
    assert scim.get("/Users").get_json()["totalResults"] == 0
    assert_error(scim.put(f"/Users/{user['id']}", user_body()), 404)
    assert_error(scim.delete(f"/Users/{user['id']}"), 404)
    assert rows(db, "SELECT status FROM users")[0][0] == "deleted"
    # Another identity (externalId) takes the name; the same externalId would restore the
    # deleted user instead (Entra's restore, tests/lifecycle/test_restore_on_create.py).
    again = scim.create_user(externalId="00u2")
    assert again["id"] != user["id"]


def test_manager_is_resolved_in_the_same_directory(scim):
    """manager {"value": id} -> value, $ref and displayName of the referenced user."""
    boss = scim.create_user("boss@acme.example", displayName="The Boss")
    user = scim.create_user(**{ENTERPRISE: {"manager": {"value": boss["id"]}}})
    manager = user[ENTERPRISE]["manager"]
    assert manager == {"value": boss["id"], "displayName": "The Boss",
                       "$ref": f"http://roster.test/scim/v2/Users/{boss['id']}"}


def test_query_parameter_names_are_matched_in_any_case(scim):
    """?Filter= was ignored and answered every user, where an IdP meant one; names are
    case-insensitive like attribute names, as they are in a .search body."""
    scim.create_user("a@acme.example", title="Z")
    scim.create_user("b@acme.example", title="A")
    found = scim.get('/Users?Filter=userName%20eq%20%22b@acme.example%22').get_json()
    assert [r["userName"] for r in found["Resources"]] == ["b@acme.example"]
    page = scim.get("/Users?SORTBY=title&sortorder=descending&COUNT=1&StartIndex=2"
                    "&Attributes=title").get_json()
    assert (page["totalResults"], page["startIndex"], page["itemsPerPage"]) == (2, 2, 1)
    assert [r["title"] for r in page["Resources"]] == ["A"]
    assert set(page["Resources"][0]) == {"schemas", "id", "userName", "title"}


def test_a_huge_start_index_is_an_empty_page_and_a_huge_count_is_capped(scim, app):
    """On both databases: past the end is an empty page with the exact total (no 400, no
    OFFSET overflow), and count is capped at maxPageSize (RFC 7644 §3.4.2.4)."""
    scim.create_user("a@acme.example")
    huge = "9" * 30
    page = scim.get(f"/Users?startIndex={huge}&count={huge}").get_json()
    assert (page["totalResults"], page["Resources"]) == (1, [])
    assert page["startIndex"] == int(huge)  # as sent: the index of a first result past the end
    search = scim.post("/.search", {"schemas": [
        "urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "startIndex": int(huge)})
    assert search.get_json()["startIndex"] == int(huge)
    page = scim.get(f"/Users?count={huge}").get_json()
    assert page["itemsPerPage"] == 1


def test_a_deleted_manager_does_not_block_changes_to_the_reports(scim, db):
    """The reference a user already has stays valid when its manager is deleted: PATCHes that
    keep it, Okta's PUT that repeats it and Entra's deactivation go through. A new reference
    to a deleted user is kept until that user is back (it names no live user)."""
    boss = scim.create_user("boss@acme.example")["id"]
    gone = scim.create_user("gone@acme.example")["id"]
    report = scim.create_user(**{ENTERPRISE: {"manager": {"value": boss}}})
    assert scim.delete(f"/Users/{boss}").status_code == 204
    assert scim.delete(f"/Users/{gone}").status_code == 204
    # The reference is left out while the manager is deleted: its $ref would be a 404.
    shown = scim.get(f"/Users/{report['id']}").get_json()
    assert "manager" not in shown.get(ENTERPRISE, {})
    replace = {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "title", "value": "Buyer"}]}
    patched = scim.patch(f"/Users/{report['id']}", replace)
    assert patched.status_code == 200
    assert "manager" not in patched.get_json().get(ENTERPRISE, {})
    # ... but kept as stored: a PATCH that does not touch it leaves it in place.
    assert rows(db, "SELECT manager_id FROM users WHERE id = :id",
                id=report["id"])[0].manager_id == boss
    put = scim.put(f"/Users/{report['id']}", user_body(
        title="Lead", **{ENTERPRISE: {"manager": {"value": boss}}}))
    assert put.status_code == 200, put.get_json()
    deactivate = {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "value": {"active": False}}]}
    response = scim.patch(f"/Users/{report['id']}", deactivate)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["active"] is False
    other = {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": f"{ENTERPRISE}:manager", "value": {"value": gone}}]}
    response = scim.patch(f"/Users/{report['id']}", other)
    assert response.status_code == 200, response.get_json()
    assert "manager" not in response.get_json().get(ENTERPRISE, {})
    assert tuple(rows(db, "SELECT manager_id, manager_ref FROM users WHERE id = :id",
                      id=report["id"])[0]) == (None, gone)


@pytest.mark.parametrize("clause", [
    'manager.value eq "{boss}"', "manager pr", "manager.value pr",
    f'{ENTERPRISE}:manager.value eq "{{boss}}"', 'manager.displayName eq "Boss"',
    'manager.displayName sw "b"'])
def test_filters_see_a_deleted_manager_as_the_output_does(scim, clause):
    """A report's deleted manager is left out of the output; a filter on it matched anyway,
    so a search named a manager the resources it returned did not show."""
    boss = scim.create_user("boss@acme.example", displayName="Boss")["id"]
    report = scim.create_user(**{ENTERPRISE: {"manager": {"value": boss}}})["id"]
    query = "/Users?filter=" + urllib.parse.quote(clause.format(boss=boss))
    assert [u["id"] for u in scim.get(query).get_json()["Resources"]] == [report]
    assert scim.delete(f"/Users/{boss}").status_code == 204
    assert scim.get(query).get_json()["totalResults"] == 0
    negated = "/Users?filter=" + urllib.parse.quote(f"not ({clause.format(boss=boss)})")
    assert [u["id"] for u in scim.get(negated).get_json()["Resources"]] == [report]


def test_a_custom_extension_is_selected_and_excluded_by_its_urn(scim):
    """``attributes=<urn>`` selects a whole block (RFC 7644 §3.10) for an extension Roster
    keeps as sent, as for the enterprise one: the custom block was left out, and
    ``excludedAttributes=<urn>`` kept it."""
    custom = "urn:example:custom:2.0:User"
    user = scim.create_user(**{custom: {"tier": "gold"}})
    only = scim.get(f"/Users/{user['id']}?attributes={custom}").get_json()
    assert only[custom] == {"tier": "gold"}
    assert only["schemas"] == [CORE_USER, custom]
    assert ENTERPRISE not in only
    without = scim.get(f"/Users/{user['id']}?excludedAttributes={custom.upper()}").get_json()
    assert custom not in without
    assert without["schemas"] == [CORE_USER, ENTERPRISE]
    assert without[ENTERPRISE]["department"] == "Engineering"


def test_patch_names_a_custom_block_by_its_urn_whatever_its_last_segment(scim, db):
    """A custom namespace need not end in the resource type (Okta's profile editor takes
    any URN, e.g. ``urn:okta:acme_app:1.0:user:custom``). A PATCH whose path was that
    block's URN read it as an attribute ``custom`` of a block ``urn:okta:acme_app:1.0:user``:
    the 200 stored a second, made-up block and left the real one unchanged. A path into a
    block in another case (URNs compare case-insensitively) went to a second block too."""
    custom = "urn:okta:acme_app:1.0:user:custom"
    user_id = scim.create_user(**{custom: {"badge": "7", "floor": "2"}})["id"]
    entra = "urn:ietf:params:scim:schemas:extension:Acme:2.0:User"
    response = scim.patch(f"/Users/{user_id}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": custom, "value": {"badge": "8"}},
        {"op": "add", "path": f"{entra}:costCode", "value": "X1"},
        {"op": "replace", "path": f"{entra.lower()}:costCode", "value": "X2"}]})
    assert response.status_code == 200, response.get_json()
    user = scim.get(f"/Users/{user_id}").get_json()
    assert user[custom] == {"badge": "8", "floor": "2"}
    assert user[entra] == {"costCode": "X2"}
    assert user["schemas"] == [CORE_USER, ENTERPRISE, custom, entra]
    [stored] = rows(db, "SELECT extension_data FROM users WHERE id = :id", id=user_id)
    blocks = stored.extension_data
    assert sorted(blocks if isinstance(blocks, dict) else json.loads(blocks)) == sorted(
        [custom, entra])
    removed = scim.patch(f"/Users/{user_id}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "remove", "path": custom.upper()}]})
    assert removed.status_code == 200, removed.get_json()
    assert custom not in scim.get(f"/Users/{user_id}").get_json()


def test_attributes_and_excluded_attributes(scim):
    """attributes keeps only what is asked plus returned:always; excluded removes."""
    user = scim.create_user()
    only = scim.get(f"/Users/{user['id']}?attributes=name.givenName,"
                    f"{ENTERPRISE}:department").get_json()
    assert only == {"schemas": only["schemas"], "id": user["id"],
                    "userName": "ada@acme.example", "name": {"givenName": "Ada"},
                    ENTERPRISE: {"department": "Engineering"}}
    without = scim.get(f"/Users/{user['id']}?excludedAttributes=emails,userName,id,meta")
    body = without.get_json()
    assert "emails" not in body
    assert "meta" not in body
    assert body["userName"] == "ada@acme.example"
    assert body["id"] == user["id"]
    # schemas names the schemas of the attributes present (RFC 7643 §3).
    assert only["schemas"] == [CORE_USER, ENTERPRISE]
    core_only = scim.get(f"/Users/{user['id']}?attributes=userName").get_json()
    assert core_only["schemas"] == [CORE_USER]
    # A bare extension attribute selects as its URN path does (as in filter and sortBy).
    short = scim.get(f"/Users/{user['id']}?attributes=department").get_json()
    assert short[ENTERPRISE] == {"department": "Engineering"}
    assert set(short) == {"schemas", "id", "userName", ENTERPRISE}
    rest = scim.get(f"/Users/{user['id']}?excludedAttributes=department").get_json()
    assert "department" not in rest.get(ENTERPRISE, {})
    no_ext = scim.get(f"/Users/{user['id']}?excludedAttributes={ENTERPRISE}").get_json()
    assert ENTERPRISE not in no_ext["schemas"]
    assert CORE_USER in no_ext["schemas"]


def test_search_applies_attributes(scim):
    """POST /Users/.search honours filter and attributes in the body."""
    scim.create_user()
    scim.create_user("bob@acme.example")
    response = scim.post("/Users/.search", {"schemas": [SEARCH], "filter": 'userName sw "bob"',
                                            "attributes": ["displayName"]})
    assert response.status_code == 200
    body = response.get_json()
    assert body["totalResults"] == 1
    assert set(body["Resources"][0]) == {"schemas", "id", "userName"}


def test_groups_appear_on_the_user_and_can_be_excluded(scim):
    """groups (readOnly) lists the user's groups; excluding it drops it."""
    user = scim.create_user()
    group = scim.create_group("Buyers", [user["id"]])
    got = scim.get(f"/Users/{user['id']}").get_json()
    assert got["groups"] == [{"value": group["id"], "display": "Buyers", "type": "direct",
                              "$ref": f"http://roster.test/scim/v2/Groups/{group['id']}"}]
    assert "groups" not in scim.get(f"/Users/{user['id']}?excludedAttributes=groups").get_json()


def test_roster_access_extension_reads_grants(scim, db, tenant):
    """The read-only access extension shows the rows of the grants table."""
    user = scim.create_user()
    role_id = rows(db, "SELECT id FROM roles WHERE organization_id = :o LIMIT 1",
                   o=tenant.org.id)[0][0]
    with db.transaction() as session:
        org = session.get(Organization, tenant.org.id)
        unit = add_unit(session, org, "Engineering", "department", None, OPERATOR)
        session.add(Grant(organization_id=tenant.org.id, user_id=user["id"], unit_id=unit.id,
                          role_id=role_id, source="manual"))
    got = scim.get(f"/Users/{user['id']}").get_json()
    assert ROSTER in got["schemas"]
    assert got[ROSTER]["organization"] == "acme"
    assert got[ROSTER]["grants"][0]["unit"] == "Engineering"


def test_list_pages_with_count_and_start_index(scim):
    """Okta spec test: count=1&startIndex=1, exact totals, stable order."""
    for i in range(3):
        scim.create_user(f"u{i}@acme.example")
    first = scim.get("/Users?count=1&startIndex=1").get_json()
    assert (first["totalResults"], first["itemsPerPage"], first["startIndex"]) == (3, 1, 1)
    second = scim.get("/Users?count=1&startIndex=2").get_json()
    assert first["Resources"][0]["id"] != second["Resources"][0]["id"]
    assert scim.get("/Users?count=0").get_json()["Resources"] == []
    # A repeated parameter is refused rather than answered with one of its values.
    for path in ("/Users?count=1&count=3&startIndex=2", "/Groups?count=0&count=5"):
        assert scim.get(path).get_json()["scimType"] == "invalidValue"


def test_filter_on_random_guid_is_empty_200(scim):
    """Entra's test-connection probe: a filter matching nothing is 200 with no resources."""
    response = scim.get('/Users?filter=id eq "0f6c2b3f-0f80-4a4b-9c5e-0d7e6c8a1b2c"')
    assert response.status_code == 200
    assert response.get_json()["totalResults"] == 0


def test_user_name_lookup_in_other_case_finds_the_user(scim):
    """Okta spec test: userName eq in a different case finds the user."""
    scim.create_user("ada@acme.example")
    found = scim.get('/Users?filter=userName eq "ADA@ACME.EXAMPLE"').get_json()
    assert found["totalResults"] == 1


def test_if_none_match_current_version_is_304(scim):
    """GET with If-None-Match of the current ETag is 304 without a body."""
    user = scim.create_user()
    response = scim.get(f"/Users/{user['id']}", headers={"If-None-Match": 'W/"1"'})
    assert response.status_code == 304
    assert response.headers["ETag"] == 'W/"1"'
    assert scim.get(f"/Users/{user['id']}",
                    headers={"If-None-Match": 'W/"0"'}).status_code == 200


def test_reads_stamp_token_last_used_outside_the_read_transaction(scim, db, tenant):
    """A GET records the token's last use (in its own short write) and still answers 200."""
    with db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE directory_tokens SET last_used_at = NULL")
    assert scim.get("/Users").status_code == 200
    assert rows(db, "SELECT last_used_at FROM directory_tokens")[0][0] is not None


def test_root_search_spans_users_and_groups(scim):
    """POST /.search returns Users then Groups, paged across both (RFC 7644 §3.4.3)."""
    scim.create_user("a@acme.example")
    scim.create_user("b@acme.example")
    scim.create_group("Buyers")
    everything = scim.post("/.search", {"schemas": [SEARCH]}).get_json()
    assert everything["totalResults"] == 3
    kinds = [r["meta"]["resourceType"] for r in everything["Resources"]]
    assert kinds == ["User", "User", "Group"]
    second_page = scim.post("/.search", {"schemas": [SEARCH], "startIndex": 2,
                                         "count": 2}).get_json()
    assert [r["meta"]["resourceType"] for r in second_page["Resources"]] == ["User", "Group"]
    only_groups = scim.post("/.search", {"schemas": [SEARCH],
                                         "filter": 'displayName eq "Buyers"'}).get_json()
    assert only_groups["totalResults"] == 1
    by_user_name = scim.post("/.search", {"schemas": [SEARCH],
                                          "filter": 'userName eq "a@acme.example"'}).get_json()
    assert [r["userName"] for r in by_user_name["Resources"]] == ["a@acme.example"]


def test_cursor_paging_walks_every_user_once(scim):
    """RFC 9865 cursors through /Users: each user exactly once, then no nextCursor."""
    created = {scim.create_user(f"u{i}@acme.example")["id"] for i in range(5)}
    seen, cursor = [], ""
    for _ in range(10):
        page = scim.get(f"/Users?count=2&cursor={cursor}").get_json()
        seen.extend(r["id"] for r in page["Resources"])
        cursor = page.get("nextCursor")
        if not cursor:
            break
    assert sorted(seen) == sorted(created)


def test_sort_by_user_name_descending(scim):
    """sortBy/sortOrder order the page (RFC 7644 §3.4.2.3)."""
    for name in ("b@acme.example", "c@acme.example", "a@acme.example"):
        scim.create_user(name)
    page = scim.get("/Users?sortBy=userName&sortOrder=descending").get_json()
    assert [r["userName"] for r in page["Resources"]] == ["c@acme.example", "b@acme.example",
                                                          "a@acme.example"]


@pytest.mark.parametrize(("stored", "asked"), [
    ("ÖZIL@fußball.de", "özil@FUßBALL.DE"),
    ("Ωmega@example.gr", "ωMEGA@EXAMPLE.GR"),
    ("Jürgen.Groß@acme.de", "JÜRGEN.GROß@ACME.DE"),
    # Unicode's simple mapping on both databases (PostgreSQL's lower()): İ is i, and a
    # final capital sigma is the medial small one (Python's str.lower differs for both).
    ("İpek@acme.com.tr", "ipek@ACME.COM.TR"),
    ("ΟΔΥΣΣΕΑΣ@example.gr", "οδυσσεασ@example.gr"),
])
def test_user_names_are_case_insensitive_beyond_ascii(scim, db, stored, asked):
    """caseExact=false (RFC 7643 §4.1.1) holds for every letter, not only A-Z, on SQLite and
    PostgreSQL alike: the other case finds the user, and cannot be created beside it."""
    user = scim.create_user(stored)
    for op in ("eq", "sw"):
        value = asked if op == "eq" else asked[:4]
        listed = scim.get("/Users", query_string={"filter": f'userName {op} "{value}"'})
        assert [r["id"] for r in listed.get_json()["Resources"]] == [user["id"]], op
    assert_error(scim.post("/Users", user_body(asked)), 409, "uniqueness")
    assert rows(db, "SELECT count(*) FROM users")[0][0] == 1


def test_group_names_are_case_insensitive_beyond_ascii(scim, db):
    """displayName (caseExact=false) likewise: ÄRZTE finds Ärzte and cannot be added twice."""
    group = scim.post("/Groups", {"schemas": [CORE_GROUP], "displayName": "Ärzte"}).get_json()
    listed = scim.get("/Groups", query_string={"filter": 'displayName eq "ÄRZTE"'})
    assert [r["id"] for r in listed.get_json()["Resources"]] == [group["id"]]
    response = scim.post("/Groups", {"schemas": [CORE_GROUP], "displayName": "ärzte"})
    assert_error(response, 409, "uniqueness")


def test_root_search_treats_an_attribute_one_type_lacks_as_absent(scim):
    """At the root an attribute only one resource type has is absent from the other's
    resources (RFC 7644 §3.4.3): it compares as a missing value (only ``ne`` holds) and, as
    sortBy, lists that type after the others. One no type has is 400, as per type."""
    a = scim.create_user("a@acme.example", emails=[{"value": "a@home.example",
                                                      "type": "home"}])["id"]
    b = scim.create_user("b@acme.example")["id"]
    buyers = scim.create_group("Buyers", [a])["id"]

    def ids(**search):
        response = scim.post("/.search", {"schemas": [SEARCH], **search})
        assert response.status_code == 200, response.get_json()
        found = response.get_json()
        assert found["totalResults"] == (3 if "count" in search else len(found["Resources"]))
        return [r["id"] for r in found["Resources"]]

    assert ids(filter='displayName eq "Buyers" or userName eq "a@acme.example"') == [
        a, buyers]
    assert ids(filter='not (userName eq "a@acme.example")') == [b, buyers]
    assert ids(filter='userName ne "a@acme.example"') == [b, buyers]
    assert ids(filter="members pr") == [buyers]
    assert ids(filter='emails[type eq "home"] and userName pr') == [a]
    assert ids(filter='urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department'
                      ' eq "Nowhere" or displayName sw "Buy"') == [buyers]
    assert ids(sortBy="userName") == [a, b, buyers]
    # The group has no userName: first if descending (RFC 7644 §3.4.2.3).
    assert ids(sortBy="userName", sortOrder="descending") == [buyers, b, a]
    assert ids(sortBy="userName", startIndex=3, count=1) == [buyers]
    for search, scim_type in (({"filter": 'nosuch eq "x" or userName pr'}, "invalidFilter"),
                              ({"filter": 'active eq "yes"'}, "invalidFilter"),
                              ({"sortBy": "nosuch"}, "invalidValue"),
                              ({"sortBy": "user name"}, "invalidValue")):
        assert_error(scim.post("/.search", {"schemas": [SEARCH], **search}), 400, scim_type)


def test_root_search_sorts_and_pages_users_and_groups_as_one_list(scim):
    """sortBy at the root orders the whole result (RFC 7644 §3.4.2.3, §3.4.3), not each
    resource type on its own; startIndex pages through that one order."""
    zed = scim.create_user("zed@acme.example", displayName="Zed")["id"]
    amy = scim.create_user("amy@acme.example", displayName="amy")["id"]
    buyers = scim.create_group("Buyers")["id"]
    nameless = scim.create_user("x@acme.example")["id"]

    def ids(**search):
        response = scim.post("/.search", {"schemas": [SEARCH], **search})
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["totalResults"] == 4
        return [r["id"] for r in response.get_json()["Resources"]]

    assert ids(sortBy="displayName") == [amy, buyers, zed, nameless]
    # A missing value is last if ascending and first if descending (RFC 7644 §3.4.2.3).
    assert ids(sortBy="displayName", sortOrder="descending") == [nameless, zed, buyers, amy]
    assert ids(sortBy="displayName", startIndex=2, count=2) == [buyers, zed]
    assert ids(sortBy="meta.created") == [zed, amy, buyers, nameless]
    assert ids() == [zed, amy, nameless, buyers]
    assert ids(count=0) == []
