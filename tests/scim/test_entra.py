"""Microsoft Entra ID replays end to end over HTTP, in both of its dialects.

Request shapes follow Microsoft Learn: "Tutorial - Develop and plan provisioning for a SCIM
endpoint in Microsoft Entra ID" (https://learn.microsoft.com/en-us/entra/identity/
app-provisioning/use-scim-to-provision-users-and-groups, "Request and response examples")
and "Known issues and resolutions with SCIM 2.0 protocol compliance of the Microsoft Entra
user provisioning service" (https://learn.microsoft.com/en-us/entra/identity/
app-provisioning/application-provisioning-config-problem-scim-compatibility), whose table
shows each request without and with the ``aadOptscim062020`` flag.
"""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest

from app.scim.dialect_report import dialect_report
from app.scim.recorder import flush
from tests.conftest import rows
from tests.scim.support import CORE_GROUP, CORE_USER, ENTERPRISE, PATCH_OP, Scim, assert_error

MS_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
MANAGER = f"{ENTERPRISE}:manager"


@pytest.fixture
def entra(client, tenant):
    """A SCIM client speaking as the tenant's Entra provisioning job."""
    return Scim(client, tenant)


def _q(expression: str) -> str:
    return quote(expression, safe="")


def _where(resource: str, expression: str, extra: str = "") -> str:
    """``/Users?filter=...`` with the filter URL-encoded (and extra parameters first)."""
    return f"/{resource}?{extra}filter={_q(expression)}"


def entra_user(user_name: str, external_id: str | None = None) -> dict:
    """The tutorial's "Create User" body."""
    return {
        "schemas": [CORE_USER, ENTERPRISE],
        "externalId": external_id or str(uuid.uuid4()), "userName": user_name,
        "active": True,
        "emails": [{"primary": True, "type": "work", "value": user_name}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName",
                 "givenName": "givenName"},
        "roles": [],
    }


def _patch(entra, resource: str, operations: list, **extra):
    response = entra.patch(resource, {"schemas": [PATCH_OP], "Operations": operations,
                                      **extra})
    assert response.status_code in (200, 204), response.get_json()
    return response


def _user(db, user_id):
    [row] = rows(db, "SELECT * FROM users WHERE id = :id", id=user_id)
    return row


def _members(db, group_id):
    return {r.user_id for r in rows(db, "SELECT user_id FROM memberships WHERE group_id = :g",
                                    g=group_id)}


def _create(entra, user_name, external_id=None):
    response = entra.post("/Users", entra_user(user_name, external_id))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def _group(entra, name):
    """The tutorial's "Create Group": an extra Microsoft schema URN and no members."""
    response = entra.post("/Groups", {"schemas": [CORE_GROUP, MS_GROUP],
                                      "externalId": str(uuid.uuid4()), "displayName": name,
                                      "meta": {"resourceType": "Group"}})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


# -- default (legacy) dialect -------------------------------------------------------------

def test_test_connection_probe_on_a_random_guid_is_200_empty(entra):
    """The test-connection probe filters on a random GUID: 200 and an empty list, not 404."""
    for resource, attribute in (("Users", "userName"), ("Users", "externalId"),
                                ("Groups", "displayName")):
        probe = entra.get(_where(resource, f'{attribute} eq "{uuid.uuid4()}"'))
        assert probe.status_code == 200
        assert (probe.get_json()["totalResults"], probe.get_json()["Resources"]) == (0, [])


def test_default_dialect_user_updates(entra, db):
    """Capitalised ops, Replace on a value path, name, userName, externalId and enterprise."""
    user_id = _create(entra, "Test_User_1@contoso.com", "ext-1")
    _patch(entra, f"/Users/{user_id}", [
        {"op": "Replace", "path": 'emails[type eq "work"].value',
         "value": "updatedEmail@contoso.com"},
        {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
        {"op": "Replace", "path": "userName", "value": "renamed@contoso.com"},
        {"op": "Replace", "path": "externalId", "value": "ext-2"},
        {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": "Finance"},
        {"op": "Add", "path": f"{ENTERPRISE}:costCenter", "value": "CC-7"},
        {"op": "Add", "path": "nickName", "value": "Babs"},
    ])
    row = _user(db, user_id)
    assert (row.user_name, row.external_id, row.family_name, row.department, row.cost_center,
            row.nick_name) == ("renamed@contoso.com", "ext-2", "updatedFamilyName", "Finance",
                               "CC-7", "Babs")
    assert row.primary_email == "updatedemail@contoso.com"


def test_add_on_a_value_path_matching_nothing_creates_the_element_or_is_no_target(entra, db):
    """``add emails[type eq "home"].value`` creates the element with the filter's type, on
    every multi-valued attribute; one that would have no ``value`` is 400 noTarget and
    changes nothing, the primary email included (RFC 7644 §3.5.2, RFC 7643 §2.4)."""
    user_id = _create(entra, "ada@contoso.com")
    version = _user(db, user_id).version
    for path in ('emails[type eq "home"].primary', 'phoneNumbers[type eq "home"].primary',
                 'emails[type eq "home"]'):
        refused = entra.patch(f"/Users/{user_id}", {"schemas": [PATCH_OP], "Operations": [
            {"op": "add", "path": path, "value": {"primary": True} if path.endswith("]")
             else True}]})
        assert_error(refused, 400, "noTarget")
        assert "would have no 'value'" in refused.get_json()["detail"]
    assert (_user(db, user_id).version, _user(db, user_id).primary_email) == (
        version, "ada@contoso.com")
    assert entra.get(f"/Users/{user_id}").get_json()["emails"] == [
        {"primary": True, "type": "work", "value": "ada@contoso.com"}]
    assert rows(db, "SELECT count(*) FROM audit_events WHERE subject_id = :u AND action = "
                    "'user:update'", u=user_id)[0][0] == 0
    _patch(entra, f"/Users/{user_id}", [
        {"op": "Add", "path": 'emails[type eq "home"].value', "value": "ada@home.example"},
        {"op": "Add", "path": 'emails[type eq "home"].primary', "value": True},
        {"op": "Add", "path": 'phoneNumbers[type eq "mobile"].value', "value": "+81 3 1234"},
        {"op": "Add", "path": 'addresses[type eq "home"].primary', "value": True},
    ])
    user = entra.get(f"/Users/{user_id}").get_json()
    assert user["emails"] == [{"primary": False, "type": "work", "value": "ada@contoso.com"},
                              {"type": "home", "value": "ada@home.example", "primary": True}]
    assert user["phoneNumbers"] == [{"type": "mobile", "value": "+81 3 1234"}]
    assert user["addresses"] == [{"type": "home", "primary": True}]
    assert _user(db, user_id).primary_email == "ada@home.example"
    assert rows(db, "SELECT count(*) FROM audit_events WHERE subject_id = :u AND action = "
                    "'user:update'", u=user_id)[0][0] == 1


def test_an_app_role_whose_value_comes_after_its_display_and_type(entra, db):
    """Entra's SingleAppRoleAssignment maps up to three targets, ``roles[primary eq
    "True"].display``, ``.type`` and ``.value`` (Microsoft Learn, "Customize user
    provisioning attribute-mappings"), listed and sent in that order. On a user without a
    role the ``display`` operation, coming first, created an element without a ``value``
    and the PATCH was 400 noTarget: Entra retried it every cycle and the user never got
    the role. The element is checked once all the operations of the PATCH have run."""
    path = 'roles[primary eq "True"]'
    legacy, compliant = _create(entra, "legacy@contoso.com"), _create(entra, "new@contoso.com")
    _patch(entra, f"/Users/{legacy}", [
        {"op": "Add", "path": f"{path}.display", "value": "Admin"},
        {"op": "Add", "path": f"{path}.type", "value": "WindowsAzureActiveDirectoryRole"},
        {"op": "Add", "path": f"{path}.value", "value": "Admin"}])
    _patch(entra, f"/Users/{compliant}?aadOptscim062020", [{"op": "add", "value": {
        f"{path}.display": "Admin", f"{path}.type": "WindowsAzureActiveDirectoryRole",
        f"{path}.value": "Admin"}}])
    role = {"primary": True, "display": "Admin", "type": "WindowsAzureActiveDirectoryRole",
            "value": "Admin"}
    for user_id in (legacy, compliant):
        assert entra.get(f"/Users/{user_id}").get_json()["roles"] == [role]
    # A value that never comes is still refused, after all the operations, and nothing is
    # written: the element would say nothing.
    other = _create(entra, "other@contoso.com")
    refused = entra.patch(f"/Users/{other}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "Add", "path": f"{path}.display", "value": "Admin"},
        {"op": "Replace", "path": "title", "value": "Boss"}]})
    assert_error(refused, 400, "noTarget")
    assert refused.get_json()["detail"].startswith("Operations[0]: ")
    assert "would have no 'value'" in refused.get_json()["detail"]
    assert (_user(db, other).version, _user(db, other).title) == (1, None)


def test_string_false_deactivates_and_string_true_reactivates(entra, db):
    """Regression: "False" as a string must deactivate (a leaver keeping access otherwise)."""
    user_id = _create(entra, "leaver@contoso.com")
    _patch(entra, f"/Users/{user_id}", [{"op": "Replace", "path": "active", "value": "False"}])
    assert bool(_user(db, user_id).active) is False
    _patch(entra, f"/Users/{user_id}", [{"op": "Replace", "path": "active", "value": "True"}])
    assert bool(_user(db, user_id).active) is True


def test_inactive_user_stays_readable_and_filterable(entra, db):
    """A disabled user is still returned by id and by filter, with active false."""
    user_id = _create(entra, "inactive@contoso.com", "ext-inactive")
    _patch(entra, f"/Users/{user_id}", [{"op": "Replace", "path": "active", "value": "False"}])
    read = entra.get(f"/Users/{user_id}")
    assert read.status_code == 200
    assert read.get_json()["active"] is False
    found = entra.get(_where("Users", 'userName eq "inactive@contoso.com"')).get_json()
    assert [r["id"] for r in found["Resources"]] == [user_id]
    by_state = entra.get(_where("Users", "active eq false")).get_json()
    assert user_id in [r["id"] for r in by_state["Resources"]]


def test_manager_add_replace_and_empty_removal(entra, db):
    """Manager: Add [{"value": id}], Replace, bare string, then removal with an empty value."""
    boss, other, report = (_create(entra, f"{n}@contoso.com") for n in ("boss", "other", "rep"))
    _patch(entra, f"/Users/{report}", [{"op": "Add", "path": MANAGER, "value": [{"value": boss}]}])
    assert _user(db, report).manager_id == boss
    _patch(entra, f"/Users/{report}", [{"op": "Replace", "path": MANAGER,
                                        "value": [{"value": other}]}])
    assert _user(db, report).manager_id == other
    _patch(entra, f"/Users/{report}", [{"op": "Replace", "path": MANAGER, "value": boss}])
    assert _user(db, report).manager_id == boss
    read = entra.get(f"/Users/{report}").get_json()
    assert read[ENTERPRISE]["manager"]["value"] == boss
    _patch(entra, f"/Users/{report}", [{"op": "Replace", "path": MANAGER, "value": ""}])
    assert _user(db, report).manager_id is None


def test_empty_string_and_null_clear_attributes(entra, db):
    """"" and null mean "clear this attribute"."""
    user_id = _create(entra, "clear@contoso.com")
    _patch(entra, f"/Users/{user_id}", [
        {"op": "Add", "path": "title", "value": "Engineer"},
        {"op": "Add", "path": f"{ENTERPRISE}:department", "value": "Ops"}])
    _patch(entra, f"/Users/{user_id}", [
        {"op": "Replace", "path": "title", "value": ""},
        {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": None}])
    row = _user(db, user_id)
    assert (row.title, row.department) == (None, None)


def test_stray_id_and_operation_name_are_ignored(entra, db):
    """A top-level "id" and a per-operation "name" do not make the PATCH fail."""
    user_id = _create(entra, "stray@contoso.com")
    _patch(entra, f"/Users/{user_id}", [
        {"op": "Replace", "name": "displayName", "path": "displayName", "value": "Stray"}],
        id=user_id)
    assert _user(db, user_id).display_name == "Stray"


def test_capitalised_attribute_names_and_unquoted_filter_values(entra, db):
    """UserName/DisplayName in bodies and filters, and externalId eq abc, all work."""
    response = entra.post("/Users", {"schemas": [CORE_USER], "UserName": "caps@contoso.com",
                                     "ExternalId": "abc", "Active": True})
    assert response.status_code == 201, response.get_json()
    user_id = response.get_json()["id"]
    assert _user(db, user_id).external_id == "abc"
    unquoted = entra.get(_where("Users", "externalId eq abc")).get_json()
    assert [r["id"] for r in unquoted["Resources"]] == [user_id]
    capitalised = entra.get(_where("Users", 'UserName eq "caps@contoso.com"'))
    assert [r["id"] for r in capitalised.get_json()["Resources"]] == [user_id]
    group_id = _group(entra, "Caps Group")
    by_name = entra.get(_where("Groups", 'DisplayName eq "Caps Group"')).get_json()
    assert [r["id"] for r in by_name["Resources"]] == [group_id]


def test_default_dialect_group_lifecycle(entra, db):
    """Create with the Microsoft URN, read without members, filter by name, Add, Remove, DELETE."""
    users = [_create(entra, f"m{i}@contoso.com") for i in range(4)]
    group_id = _group(entra, "Sales")
    [row] = rows(db, "SELECT display_name FROM groups WHERE id = :id", id=group_id)
    assert row.display_name == "Sales"

    read = entra.get(f"/Groups/{group_id}?excludedAttributes=members")
    assert read.status_code == 200
    assert "members" not in read.get_json()
    listed = entra.get(_where("Groups", 'displayName eq "Sales"',
                              "excludedAttributes=members&")).get_json()
    assert [g["id"] for g in listed["Resources"]] == [group_id]
    assert all("members" not in g for g in listed["Resources"])

    _patch(entra, f"/Groups/{group_id}", [{"op": "Add", "path": "members", "value": [
        {"$ref": None, "value": u} for u in users]}])
    assert _members(db, group_id) == set(users)
    _patch(entra, f"/Groups/{group_id}", [{"op": "Replace", "path": "displayName",
                                            "value": "Sales EMEA"}])
    assert rows(db, "SELECT display_name FROM groups")[0].display_name == "Sales EMEA"
    assert entra.delete(f"/Groups/{group_id}").status_code == 204
    assert rows(db, "SELECT * FROM groups") == []


def test_remove_members_with_value_list_removes_exactly_those(entra, db):
    """Regression: Remove path=members with a value list must not empty the group."""
    users = [_create(entra, f"keep{i}@contoso.com") for i in range(5)]
    group_id = _group(entra, "Exact")
    _patch(entra, f"/Groups/{group_id}", [{"op": "Add", "path": "members",
                                            "value": [{"value": u} for u in users]}])
    _patch(entra, f"/Groups/{group_id}", [{"op": "Remove", "path": "members",
                                            "value": [{"$ref": None, "value": users[0]},
                                                      {"$ref": None, "value": users[3]}]}])
    assert _members(db, group_id) == {users[1], users[2], users[4]}


def test_legacy_removal_lists_an_app_role_by_value_alone(entra, db):
    """Entra creates a user's app roles typed (``{"primary": true, "type":
    "WindowsAzureActiveDirectoryRole", "value": "Admin"}``) but sends PATCH elements with a
    ``value`` only: Microsoft Learn, "Customize user provisioning attribute-mappings",
    Provisioning a role to a SCIM app: "The request formats in the PATCH and POST differ".
    Its legacy removal lists those elements (``Remove`` + ``path`` + value list, as for
    members). A role listed by ``value`` alone was compared with the stored one by value
    and type, matched nothing, and stayed, with a 200: the user kept the role."""
    body = entra_user("roles@contoso.com")
    body["roles"] = [
        {"primary": True, "type": "WindowsAzureActiveDirectoryRole", "value": "Admin"},
        {"primary": False, "type": "WindowsAzureActiveDirectoryRole", "value": "Reader"}]
    created = entra.post("/Users", body)
    assert created.status_code == 201, created.get_json()
    user_id = created.get_json()["id"]
    _patch(entra, f"/Users/{user_id}", [{"op": "Remove", "path": "roles",
                                         "value": [{"value": "admin"}]}])
    reader = {"primary": False, "type": "WindowsAzureActiveDirectoryRole", "value": "Reader"}
    assert entra.get(f"/Users/{user_id}").get_json()["roles"] == [reader]
    assert _user(db, user_id).version == 2
    # A type the element does give still has to match: another type's Reader is not this one.
    _patch(entra, f"/Users/{user_id}", [{"op": "Remove", "path": "roles",
                                         "value": [{"value": "Reader", "type": "other"}]}])
    assert entra.get(f"/Users/{user_id}").get_json()["roles"] == [reader]
    _patch(entra, f"/Users/{user_id}", [{"op": "Remove", "path": "roles", "value": [
        {"value": "Reader", "type": "WindowsAzureActiveDirectoryRole", "display": "Reader"}]}])
    assert "roles" not in entra.get(f"/Users/{user_id}").get_json()


def test_default_dialect_is_reported_as_legacy_entra(app, entra, db, tenant):
    """The dialect report names the legacy dialect and the flag that switches it."""
    user_id = _create(entra, "report@contoso.com")
    _patch(entra, f"/Users/{user_id}", [{"op": "Replace", "path": "active", "value": "False"}])
    flush(app)
    with db.transaction() as session:
        report = dialect_report(session, tenant.directory.id)
    notes = {n["note"] for n in report["notes"]}
    assert {"capitalised_op", "string_boolean"} <= notes
    assert report["dialect"] == "entra-legacy"
    assert "add aadOptscim062020 to the tenant URL" in report["summary"]


def test_a_bare_string_manager_does_not_make_a_compliant_tenant_legacy(app, entra, db, tenant):
    """Entra sends the manager as a bare id with aadOptscim062020 set too: a tenant that sent
    only compliant requests was reported legacy and told to add the flag it had."""
    boss, report_id = _create(entra, "boss@contoso.com"), _create(entra, "r@contoso.com")
    _patch(entra, f"/Users/{report_id}", [
        {"op": "add", "path": f"{ENTERPRISE}:manager", "value": boss},
        {"op": "replace", "value": {"name.givenName": "Rae", "active": False}}])
    assert _user(db, report_id).manager_id == boss
    flush(app)
    with db.transaction() as session:
        report = dialect_report(session, tenant.directory.id)
    assert {"bare_string_manager", "pathless_dotted_keys"} <= {n["note"] for n in report["notes"]}
    assert report["dialect"] == "entra-compliant"


def test_an_app_role_mapping_does_not_make_a_compliant_tenant_legacy(app, entra, db, tenant):
    """Entra's SingleAppRoleAssignment mapping targets ``roles[primary eq "True"].value``
    (Microsoft Learn, "Customize user provisioning attribute-mappings"), a name it sends as
    the PATCH path, and may match users on, in both dialects. Its "True" was counted as the
    legacy dialect's string booleans: a tenant with aadOptscim062020 set was reported
    ``entra-mixed``, or ``entra-legacy`` and told to add the flag it had."""
    user_id = _create(entra, "role@contoso.com")
    _patch(entra, f"/Users/{user_id}?aadOptscim062020", [
        {"op": "add", "path": 'roles[primary eq "True"].value', "value": "Admin"},
        {"op": "replace", "value": {"name.givenName": "Rae", "displayName": "Rae"}}])
    assert entra.get(f"/Users/{user_id}").get_json()["roles"] == [
        {"primary": True, "value": "Admin"}]
    found = entra.get(_where("Users", 'roles[primary eq "True"].value eq "Admin"',
                             "aadOptscim062020&"))
    assert [u["id"] for u in found.get_json()["Resources"]] == [user_id]
    flush(app)
    with db.transaction() as session:
        report = dialect_report(session, tenant.directory.id)
    notes = {n["note"]: n for n in report["notes"]}
    assert set(notes) == {"pathless_dotted_keys", "string_boolean_in_filter", "entra_flag"}
    assert notes["string_boolean_in_filter"]["count"] == 2
    assert 'roles[primary eq "True"]' in notes["string_boolean_in_filter"]["meaning"]
    assert report["dialect"] == "entra-compliant"


def test_a_compliant_tenant_that_only_deactivates_path_less_is_not_okta(app, entra, db,
                                                                      tenant):
    """A tenant with aadOptscim062020 whose only normalised request was a path-less
    ``{"active": false}`` (Okta's shape too, which compliant Entra also sends) was reported
    ``okta`` and told it spoke Okta's dialect; the flag in its URL now names it."""
    user_id = entra.post("/Users?aadOptscim062020",
                         entra_user("quiet@contoso.com")).get_json()["id"]
    _patch(entra, f"/Users/{user_id}?aadOptscim062020",
           [{"op": "replace", "value": {"active": False}}])
    flush(app)
    with db.transaction() as session:
        report = dialect_report(session, tenant.directory.id)
    notes = {n["note"]: n["count"] for n in report["notes"]}
    assert notes == {"pathless_active": 1, "entra_flag": 2}
    assert report["dialect"] == "entra-compliant"
    assert "aadOptscim062020" in {n["note"]: n for n in report["notes"]}[
        "entra_flag"]["meaning"]


# -- compliant dialect (aadOptscim062020) -------------------------------------------------

def test_compliant_dialect_user_updates(entra, db):
    """Lowercase ops, JSON booleans, one path-less replace with dotted and URN keys."""
    user_id = _create(entra, "compliant@contoso.com")
    _patch(entra, f"/Users/{user_id}", [{"op": "replace", "value": {
        "displayName": "Compliant User", "name.givenName": "Compliant",
        "name.familyName": "User", f"{ENTERPRISE}:employeeNumber": "E-42",
        f"{ENTERPRISE}:department": "Legal", "active": True}}])
    row = _user(db, user_id)
    assert (row.display_name, row.given_name, row.family_name, row.employee_number,
            row.department) == ("Compliant User", "Compliant", "User", "E-42", "Legal")
    _patch(entra, f"/Users/{user_id}", [{"op": "replace", "path": "active", "value": False}])
    assert bool(_user(db, user_id).active) is False
    _patch(entra, f"/Users/{user_id}", [{"op": "add", "value": {"nickName": "Babs"}}])
    assert _user(db, user_id).nick_name == "Babs"


def test_compliant_dialect_member_removal_by_value_filter(entra, db):
    """remove members[value eq "id"] removes that one member."""
    users = [_create(entra, f"c{i}@contoso.com") for i in range(3)]
    group_id = _group(entra, "Compliant")
    _patch(entra, f"/Groups/{group_id}", [{"op": "add", "path": "members",
                                            "value": [{"value": u} for u in users]}])
    _patch(entra, f"/Groups/{group_id}", [{"op": "remove",
                                            "path": f'members[value eq "{users[1]}"]'}])
    assert _members(db, group_id) == {users[0], users[2]}


def test_both_dialects_against_the_same_directory(app, entra, db, tenant):
    """Provision-on-demand ignores the flag: both dialects hit one directory and both work."""
    user_id = _create(entra, "both@contoso.com")
    group_id = _group(entra, "Both")
    other = _create(entra, "both2@contoso.com")
    _patch(entra, f"/Groups/{group_id}", [{"op": "Add", "path": "members",
                                            "value": [{"value": user_id}, {"value": other}]}])
    _patch(entra, f"/Users/{user_id}", [{"op": "Replace", "path": "active", "value": "False"}])
    _patch(entra, f"/Users/{user_id}", [{"op": "replace", "path": "active", "value": True}])
    _patch(entra, f"/Groups/{group_id}", [{"op": "remove",
                                            "path": f'members[value eq "{other}"]'}])
    _patch(entra, f"/Users/{user_id}", [{"op": "replace", "value": {"name.givenName": "B"}}])
    assert bool(_user(db, user_id).active) is True
    assert _user(db, user_id).given_name == "B"
    assert _members(db, group_id) == {user_id}
    flush(app)
    with db.transaction() as session:
        report = dialect_report(session, tenant.directory.id)
    assert report["dialect"] == "entra-mixed"


def test_flight_recorder_shows_why_a_request_failed(app, entra, db):
    """A PATCH on an unknown path is answered 400 and kept with its body and notes."""
    user_id = _create(entra, "why@contoso.com")
    response = entra.patch(f"/Users/{user_id}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "Replace", "path": "noSuchAttribute", "value": "x"}]})
    assert response.status_code == 400
    flush(app)
    [row] = rows(db, "SELECT * FROM scim_requests WHERE status >= 400")
    assert row.method == "PATCH"
    assert "noSuchAttribute" in row.request_body
    assert "invalidPath" in row.response_body
