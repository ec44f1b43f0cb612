"""Okta and Entra ID PATCH dialects (issue 5) replayed against the pure PATCH engine.

Request shapes come from:
- Entra tutorial: https://learn.microsoft.com/en-us/entra/identity/app-provisioning/use-scim-to-provision-users-and-groups
- Entra known issues (aadOptscim062020): https://learn.microsoft.com/en-us/entra/identity/app-provisioning/application-provisioning-config-problem-scim-compatibility
- Entra Q&A (Add on emails): https://learn.microsoft.com/en-us/answers/questions/1684621/
- Okta SCIM 2.0: https://developer.okta.com/docs/api/openapi/okta-scim/guides/scim-20
Each test asserts the result and the dialect note the view records for the report.
"""

from __future__ import annotations

import pytest

from app.scim import dialect
from app.scim.errors import ScimError
from app.scim.patch import MemberChange, PatchResult, apply_patch
from app.scim.schema import CORE_GROUP, CORE_USER, ENTERPRISE_USER, PATCH_OP

ENT = ENTERPRISE_USER
USER = {
    "schemas": [CORE_USER, ENT], "id": "u1", "userName": "ada@acme.example",
    "externalId": "00u1", "active": True,
    "name": {"givenName": "Ada", "familyName": "Lovelace"},
    "emails": [{"value": "ada@acme.example", "type": "work", "primary": True}],
    ENT: {"department": "R&D"},
}
BARE_USER = {"schemas": [CORE_USER], "id": "u2", "userName": "bob@acme.example",
             "active": True}
GROUP = {"schemas": [CORE_GROUP], "id": "abf4dd94-a4c0-4f67-89c9-76b03340cb9b",
         "displayName": "Engineers"}


def run(resource: dict, body: dict, resource_type: str = "User") -> tuple[PatchResult, list]:
    notes: list[str] = []
    return apply_patch(resource, body, resource_type=resource_type, notes=notes), notes


def msg(*operations: dict, **extra: object) -> dict:
    return {"schemas": [PATCH_OP], "Operations": list(operations), **extra}


# --- Entra ID, default dialect ---------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    ("False", False), ("True", True), ("false", False), ("TRUE", True),
], ids=["False", "True", "false", "TRUE"])
def test_entra_string_boolean_on_active(raw, expected):
    """Entra default: `{"op":"Replace","path":"active","value":"False"}` (known issues doc)."""
    result, notes = run(USER, msg({"op": "Replace", "path": "active", "value": raw}))
    assert result.resource["active"] is expected
    assert dialect.STRING_BOOLEAN in notes
    assert dialect.CAPITALISED_OP in notes
    assert result.touched == (set() if expected else {"active"})


def test_entra_update_user_multi_valued_properties():
    """Tutorial "Update User [Multi-valued properties]": Replace on a work email and familyName."""
    result, notes = run(USER, msg(
        {"op": "Replace", "path": 'emails[type eq "work"].value',
         "value": "updatedEmail@acme.example"},
        {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}))
    assert result.resource["emails"] == [{"value": "updatedEmail@acme.example", "type": "work",
                                          "primary": True}]
    assert result.resource["name"] == {"givenName": "Ada", "familyName": "updatedFamilyName"}
    assert notes == [dialect.CAPITALISED_OP]


@pytest.mark.parametrize("op", ["Replace", "Add"])
def test_entra_work_email_is_created_when_missing(op):
    """Entra sends `Replace`/`Add emails[type eq "work"].value` to a user with no work email:
    the element is created, not refused with noTarget (Q&A 1684621 shows the Add shape)."""
    result, _ = run(BARE_USER, msg({"op": op, "path": 'emails[type eq "work"].value',
                                    "value": "bob@acme.example"}))
    assert result.resource["emails"] == [{"type": "work", "value": "bob@acme.example"}]


@pytest.mark.parametrize(("path", "value", "check"), [
    ("userName", "5b50642d@acme.example", lambda r: r["userName"] == "5b50642d@acme.example"),
    ("externalId", "ext-2", lambda r: r["externalId"] == "ext-2"),
    (f"{ENT}:department", "Sales", lambda r: r[ENT]["department"] == "Sales"),
    (f"{ENT}:employeeNumber", "42", lambda r: r[ENT]["employeeNumber"] == "42"),
], ids=["userName", "externalId", "enterprise-department", "enterprise-employeeNumber"])
def test_entra_replace_single_valued(path, value, check):
    """Tutorial "Update User [Single-valued properties]": `Replace` on userName and friends."""
    result, _ = run(USER, msg({"op": "Replace", "path": path, "value": value}))
    assert check(result.resource)


@pytest.mark.parametrize(("path", "value", "check"), [
    ("nickName", "Babs", lambda r: r["nickName"] == "Babs"),
    ("title", "CTO", lambda r: r["title"] == "CTO"),
    (f"{ENT}:costCenter", "4711", lambda r: r[ENT]["costCenter"] == "4711"),
    (f"{ENT}:department", "Ops", lambda r: r[ENT]["department"] == "Ops"),
], ids=["nickName", "title", "enterprise-new", "enterprise-existing-replaced"])
def test_entra_add_on_single_valued_replaces(path, value, check):
    """Known issues doc: `{"op":"Add","path":"nickName","value":"Babs"}`; add on a
    single-valued attribute sets it, replacing any value (RFC 7644 §3.5.2.1)."""
    result, _ = run(USER, msg({"op": "Add", "path": path, "value": value}))
    assert check(result.resource)


@pytest.mark.parametrize(("value", "fired"), [
    ([{"$ref": None, "value": "m1"}], []),
    ({"value": "m1"}, []),
    ("m1", [dialect.BARE_STRING_MANAGER]),
], ids=["list-of-one", "object", "bare-string"])
def test_entra_manager_is_set_with_add(value, fired):
    """Entra sets the manager with `Add` and `[{"value": id}]`; some tenants send a string."""
    result, notes = run(USER, msg({"op": "Add", "path": f"{ENT}:manager", "value": value}))
    assert result.resource[ENT]["manager"] == {"value": "m1"}
    assert result.touched == {f"{ENT}:manager"}
    for name in fired:
        assert name in notes


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("manager", [{"$ref": None, "value": "m1"}], {"department": "R&D",
                                                  "manager": {"value": "m1"}}),
    ("Manager.value", "m1", {"department": "R&D", "manager": {"value": "m1"}}),
    ("department", "Legal", {"department": "Legal"}),
    ("employeeNumber", "E-7", {"department": "R&D", "employeeNumber": "E-7"}),
], ids=["manager", "manager.value", "department", "employeeNumber"])
def test_extension_attributes_named_without_their_urn(path, value, expected):
    """Microsoft's SCIM tutorial sets the manager with path "manager": an unqualified name
    resolves as in filters and attributes, core first, then the enterprise extension."""
    result, _ = run(USER, msg({"op": "Add", "path": path, "value": value}))
    assert result.resource[ENT] == expected
    assert result.resource["userName"] == USER["userName"]


def test_an_unqualified_core_name_still_means_the_core_attribute():
    """Core first: "displayName" names the core attribute, never an extension's."""
    result, _ = run(USER, msg({"op": "replace", "path": "displayName", "value": "Ada L"}))
    assert result.resource["displayName"] == "Ada L"
    assert result.resource[ENT] == {"department": "R&D"}


def test_entra_manager_is_changed_with_replace():
    """Entra changes the manager with `Replace` and the new id."""
    start = {**USER, ENT: {"manager": {"value": "m1"}}}
    result, _ = run(start, msg({"op": "Replace", "path": f"{ENT}:manager",
                                "value": [{"value": "m2"}]}))
    assert result.resource[ENT] == {"manager": {"value": "m2"}}


@pytest.mark.parametrize("value", ["", None, {"value": ""}, [{"value": ""}], [], {"value": None}],
                         ids=["empty-string", "null", "empty-value", "list-empty-value",
                              "empty-list", "null-value"])
def test_entra_manager_is_removed_with_an_empty_value(value):
    """Entra removes the manager with an empty value; every shape clears it, nothing fails."""
    start = {**USER, ENT: {"department": "R&D", "manager": {"value": "m1"}}}
    result, notes = run(start, msg({"op": "Replace", "path": f"{ENT}:manager", "value": value}))
    assert result.resource[ENT] == {"department": "R&D"}
    if value is not None and value != [] and value != {"value": None}:
        assert dialect.EMPTY_VALUE_CLEARS in notes


@pytest.mark.parametrize(("path", "value", "cleared"), [
    ("title", "", lambda r: "title" not in r),
    ("title", None, lambda r: "title" not in r),
    ("name.givenName", "", lambda r: r["name"] == {"familyName": "Lovelace"}),
    ('emails[type eq "work"].value', "", lambda r: "emails" not in r),
    (f"{ENT}:department", "", lambda r: ENT not in r),
], ids=["string-empty", "string-null", "sub-attribute", "work-email", "enterprise"])
def test_entra_empty_values_clear_attributes(path, value, cleared):
    """Entra: "" and null mean "clear this attribute" (issue 5)."""
    start = {**USER, "title": "Engineer"}
    result, notes = run(start, msg({"op": "Replace", "path": path, "value": value}))
    assert cleared(result.resource)
    assert dialect.EMPTY_VALUE_CLEARS in notes


def test_entra_group_member_removal_removes_exactly_those_members():
    """Tutorial "Update Group [Remove Members]": `Remove` on path members with the ids in value
    must remove exactly those members, never empty the group (issue 5's most common bug)."""
    body = msg({"name": "removeMember", "op": "Remove", "path": "members",
                "value": [{"$ref": None, "value": "id1"}, {"$ref": None, "value": "id2"}]})
    result, notes = run(GROUP, body, "Group")
    assert result.member_changes == (MemberChange("remove", ("id1", "id2")),)
    assert dialect.LEGACY_MEMBER_REMOVAL in notes
    assert dialect.OPERATION_NAME in notes


def test_entra_group_member_add():
    """Tutorial "Update Group [Add Members]": `{"name":"addMember","op":"Add","path":"members",
    "value":[{"$ref":null,"value":id}]}`."""
    body = msg({"name": "addMember", "op": "Add", "path": "members",
                "value": [{"$ref": None, "value": "f648f8d5ea4e4cd38e9c"}]})
    result, notes = run(GROUP, body, "Group")
    assert result.member_changes == (MemberChange("add", ("f648f8d5ea4e4cd38e9c",)),)
    assert notes == [dialect.CAPITALISED_OP, dialect.OPERATION_NAME]


def test_remove_members_without_value_removes_all():
    """`remove` on path members with no value removes every member (RFC 7644 §3.5.2.2)."""
    result, notes = run(GROUP, msg({"op": "remove", "path": "members"}), "Group")
    assert result.member_changes == (MemberChange("remove_all"),)
    assert dialect.LEGACY_MEMBER_REMOVAL not in notes


def test_entra_stray_id_and_operation_name_are_ignored():
    """Entra may send a top-level "id" and a per-operation "name"; both are ignored."""
    body = msg({"op": "Replace", "path": "displayName", "value": "Ada L", "name": "x"},
               id="u1")
    result, notes = run(USER, body)
    assert result.resource["displayName"] == "Ada L"
    assert {dialect.STRAY_ID, dialect.OPERATION_NAME} <= set(notes)


def test_entra_capitalised_attribute_names_in_paths():
    """Entra capitalises attribute names (`DisplayName`); they are case-insensitive (§2.1)."""
    result, notes = run(GROUP, msg({"op": "Replace", "path": "DisplayName", "value": "Ops"}),
                        "Group")
    assert result.resource["displayName"] == "Ops"
    assert dialect.CAPITALISED_ATTRIBUTE in notes


# --- Entra ID, compliant dialect (aadOptscim062020) ------------------------------------

def test_entra_compliant_pathless_replace_with_dotted_and_urn_keys():
    """Known issues doc with the flag: one path-less `replace` carries dotted, filtered and
    URN-prefixed keys, with JSON booleans."""
    body = msg({"op": "replace", "value": {
        "displayName": "Pvlo", "name.givenName": "Pvlo", "name.familyName": "Bcwqnm",
        'emails[type eq "work"].value': "pvlo@acme.example", "active": False,
        f"{ENT}:department": "Sales", f"{ENT}:manager": "m9"}})
    result, notes = run(USER, body)
    r = result.resource
    assert (r["displayName"], r["name"], r["active"]) == (
        "Pvlo", {"givenName": "Pvlo", "familyName": "Bcwqnm"}, False)
    assert r["emails"][0]["value"] == "pvlo@acme.example"
    assert r[ENT] == {"department": "Sales", "manager": {"value": "m9"}}
    assert dialect.PATHLESS_DOTTED_KEYS in notes
    assert dialect.CAPITALISED_OP not in notes
    assert dialect.STRING_BOOLEAN not in notes


def test_entra_compliant_member_removal_by_filter():
    """Known issues doc with the flag: `remove` with path `members[value eq "<id>"]`."""
    body = msg({"op": "remove", "path": 'members[value eq "16b083c0-f1e8-4544-b6ee"]'})
    result, notes = run(GROUP, body, "Group")
    assert result.member_changes == (MemberChange("remove", ("16b083c0-f1e8-4544-b6ee",)),)
    assert notes == []


def test_both_entra_dialects_against_the_same_resource():
    """Provision-on-demand ignores the flag, so one directory sees both dialects."""
    first, _ = run(USER, msg({"op": "Replace", "path": "active", "value": "False"}))
    second, _ = run(first.resource, msg({"op": "replace", "path": "active", "value": True}))
    assert (first.resource["active"], second.resource["active"]) == (False, True)


# --- Okta --------------------------------------------------------------------------------

@pytest.mark.parametrize("active", [False, True], ids=["deactivate", "reactivate"])
def test_okta_pathless_active(active):
    """Okta (de)activates with `{"op":"replace","value":{"active":false}}` (Okta SCIM 2.0)."""
    start = {**USER, "active": not active}
    result, notes = run(start, msg({"op": "replace", "value": {"active": active}}))
    assert result.resource["active"] is active
    assert result.touched == {"active"}
    assert notes == [dialect.PATHLESS_ACTIVE]


def test_okta_group_push_rename_and_membership_in_one_patch():
    """Okta Group Push: a path-less rename carrying the group's own id, plus `remove` on
    `members[value eq ...]` and `add` of members, in one PATCH."""
    body = msg(
        {"op": "replace", "value": {"id": GROUP["id"], "displayName": "Test SCIMv2"}},
        {"op": "remove", "path": 'members[value eq "89bb1940-b905-4575-9e7f-6f887cfb368e"]'},
        {"op": "add", "path": "members", "value": [
            {"value": "23a35c27-23d3-4c03-b4c5-6443c09e7173", "display": "test.user@okta.local"}]})
    result, _ = run(GROUP, body, "Group")
    assert result.resource == {**GROUP, "displayName": "Test SCIMv2"}
    assert result.member_changes == (
        MemberChange("remove", ("89bb1940-b905-4575-9e7f-6f887cfb368e",)),
        MemberChange("add", ("23a35c27-23d3-4c03-b4c5-6443c09e7173",)))
    assert result.touched == {"displayName", "members"}


def test_okta_group_push_with_another_id_is_refused():
    """The id inside a path-less value must be the group's own; anything else is mutability."""
    body = msg({"op": "replace", "value": {"id": "other", "displayName": "X"}})
    with pytest.raises(ScimError) as err:
        run(GROUP, body, "Group")
    assert (err.value.status, err.value.scim_type) == (400, "mutability")


def test_okta_replace_members_with_full_list():
    """Okta Group Push may replace `members` with the full list: one replace change."""
    body = msg({"op": "replace", "path": "members",
                "value": [{"value": "a", "display": "A"}, {"value": "b", "display": "B"}]})
    result, notes = run(GROUP, body, "Group")
    assert result.member_changes == (MemberChange("replace", ("a", "b")),)
    assert dialect.MEMBERS_REPLACE_ALL in notes
