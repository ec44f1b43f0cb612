"""The SCIM PATCH engine (RFC 7644 §3.5.2) on a resource's SCIM JSON: pure, table-driven."""

from __future__ import annotations

import copy
import random

import pytest

from app.scim.errors import ScimError
from app.scim.patch import MemberChange, PatchResult, apply_patch
from app.scim.schema import CORE_GROUP, CORE_USER, ENTERPRISE_USER, PATCH_OP, ROSTER_USER

ENT = ENTERPRISE_USER
CUSTOM = "urn:ietf:params:scim:schemas:extension:custom:2.0:User"
GONE = object()

USER = {
    "schemas": [CORE_USER, ENT],
    "id": "u1",
    "userName": "ada@acme.example",
    "name": {"givenName": "Ada", "familyName": "Lovelace"},
    "active": True,
    "title": "Engineer",
    "emails": [{"value": "ada@acme.example", "type": "work", "primary": True},
               {"value": "ada@home.example", "type": "home"}],
    "addresses": [{"type": "work", "locality": "London", "country": "GB"}],
    ENT: {"department": "R&D", "manager": {"value": "m1", "displayName": "Boss"}},
    "groups": [{"value": "g1", "display": "Engineers"}],
    "meta": {"resourceType": "User", "version": 'W/"1"'},
}
GROUP = {"schemas": [CORE_GROUP], "id": "g1", "displayName": "Engineers",
         "meta": {"resourceType": "Group"}}


def patch(resource: dict, *operations: dict, resource_type: str = "User",
          notes: list[str] | None = None) -> PatchResult:
    body = {"schemas": [PATCH_OP], "Operations": list(operations)}
    return apply_patch(resource, body, resource_type=resource_type,
                       notes=[] if notes is None else notes)


def changed(base: dict, **changes: object) -> dict:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        key = {"ENT": ENT, "CUSTOM": CUSTOM}.get(key, key)
        if value is GONE:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def op(name: str, path: str | None = None, value: object = GONE) -> dict:
    out: dict = {"op": name}
    if path is not None:
        out["path"] = path
    if value is not GONE:
        out["value"] = value
    return out


WORK, HOME = USER["emails"]
CASES = [
    ("replace-simple", op("replace", "title", "CTO"), changed(USER, title="CTO")),
    ("add-single-valued-replaces", op("add", "title", "CTO"), changed(USER, title="CTO")),
    ("pathless-replace", op("replace", None, {"title": "CTO", "active": False}),
     changed(USER, title="CTO", active=False)),
    ("add-sub-attribute", op("add", "name.middleName", "King"),
     changed(USER, name={**USER["name"], "middleName": "King"})),
    ("replace-sub-attribute", op("replace", "name.familyName", "King"),
     changed(USER, name={"givenName": "Ada", "familyName": "King"})),
    ("remove-sub-attribute", op("remove", "name.givenName"),
     changed(USER, name={"familyName": "Lovelace"})),
    ("replace-complex-merges", op("replace", "name", {"familyName": "King"}),
     changed(USER, name={"givenName": "Ada", "familyName": "King"})),
    ("remove-complex", op("remove", "name"), changed(USER, name=GONE)),
    ("add-multi-appends", op("add", "emails", [{"value": "a@x.example", "type": "other"}]),
     changed(USER, emails=[WORK, HOME, {"value": "a@x.example", "type": "other"}])),
    ("add-multi-merges-equal-value",
     op("add", "emails", [{"value": "ADA@acme.example", "type": "work", "display": "Ada"}]),
     changed(USER, emails=[{**WORK, "value": "ADA@acme.example", "display": "Ada"}, HOME])),
    ("add-multi-primary-demotes-others",
     op("add", "emails", [{"value": "n@x.example", "primary": True}]),
     changed(USER, emails=[{**WORK, "primary": False}, HOME,
                           {"value": "n@x.example", "primary": True}])),
    ("replace-multi-whole", op("replace", "emails", [{"value": "n@x.example"}]),
     changed(USER, emails=[{"value": "n@x.example"}])),
    ("replace-filter-sub", op("replace", 'emails[type eq "work"].value', "w@x.example"),
     changed(USER, emails=[{**WORK, "value": "w@x.example"}, HOME])),
    ("replace-filter-sub-creates", op("replace", 'emails[type eq "other"].value', "o@x.example"),
     changed(USER, emails=[WORK, HOME, {"type": "other", "value": "o@x.example"}])),
    ("add-filter-sub-creates", op("add", 'phoneNumbers[type eq "mobile"].value', "+44 1"),
     changed(USER, phoneNumbers=[{"type": "mobile", "value": "+44 1"}])),
    ("add-filter-primary-creates-from-filter-value",
     op("add", 'emails[value eq "o@x.example"].primary', True),
     changed(USER, emails=[{**WORK, "primary": False}, HOME,
                           {"value": "o@x.example", "primary": True}])),
    ("add-filter-address-sub-creates", op("add", 'addresses[type eq "home"].primary', True),
     changed(USER, addresses=[*USER["addresses"], {"type": "home", "primary": True}])),
    ("replace-filter-element-merges",
     op("replace", 'addresses[type eq "work"]', {"locality": "Paris"}),
     changed(USER, addresses=[{"type": "work", "locality": "Paris", "country": "GB"}])),
    ("replace-filter-address-sub", op("replace", 'addresses[type eq "work"].locality', "Leeds"),
     changed(USER, addresses=[{"type": "work", "locality": "Leeds", "country": "GB"}])),
    ("replace-filter-primary-demotes",
     op("replace", 'emails[type eq "home"].primary', True),
     changed(USER, emails=[{**WORK, "primary": False}, {**HOME, "primary": True}])),
    ("filter-is-case-insensitive", op("remove", 'emails[TYPE EQ "HOME"]'),
     changed(USER, emails=[WORK])),
    ("remove-filter", op("remove", 'emails[type eq "home"]'), changed(USER, emails=[WORK])),
    ("remove-filter-sub", op("remove", 'addresses[type eq "work"].country'),
     changed(USER, addresses=[{"type": "work", "locality": "London"}])),
    ("remove-filter-value-drops-element", op("remove", 'emails[type eq "home"].value'),
     changed(USER, emails=[WORK])),
    ("remove-last-element-removes-attribute", op("remove", 'addresses[type eq "work"]'),
     changed(USER, addresses=GONE)),
    ("remove-multi", op("remove", "emails"), changed(USER, emails=GONE)),
    ("add-many-elements-merging-equal", op("add", "phoneNumbers", [
        {"value": f"+{i % 7}", "type": "work"} for i in range(40)]),
     changed(USER, phoneNumbers=[{"value": f"+{i}", "type": "work"} for i in range(7)])),
    # attrPath "emails.type" without a filter (RFC 7644 §3.5.2): every element's type.
    ("remove-sub-of-every-element", op("remove", "emails.type"),
     changed(USER, emails=[{"value": "ada@acme.example", "primary": True},
                           {"value": "ada@home.example"}])),
    ("replace-sub-of-every-element", op("replace", "emails.display", "Ada"),
     changed(USER, emails=[{**WORK, "display": "Ada"}, {**HOME, "display": "Ada"}])),
    ("add-value-to-empty-multi", op("add", "phoneNumbers.value", "+44 1"),
     changed(USER, phoneNumbers=[{"value": "+44 1"}])),
    ("remove-value-of-every-element", op("remove", "addresses.country"),
     changed(USER, addresses=[{"type": "work", "locality": "London"}])),
    ("remove-listed-values", op("remove", "emails", [{"value": "ada@home.example",
                                                      "type": "home"}]),
     changed(USER, emails=[WORK])),
    ("remove-unset-is-no-op", op("remove", "nickName"), USER),
    ("replace-enterprise", op("replace", f"{ENT}:department", "Sales"),
     changed(USER, ENT={**USER[ENT], "department": "Sales"})),
    ("replace-manager", op("replace", f"{ENT}:manager", {"value": "m2"}),
     changed(USER, ENT={"department": "R&D", "manager": {"value": "m2", "displayName": "Boss"}})),
    ("replace-manager-value", op("replace", f"{ENT}:manager.value", "m2"),
     changed(USER, ENT={"department": "R&D", "manager": {"value": "m2", "displayName": "Boss"}})),
    ("remove-manager", op("remove", f"{ENT}:manager"),
     changed(USER, ENT={"department": "R&D"})),
    ("add-extension-root", op("add", ENT, {"costCenter": "42"}),
     changed(USER, ENT={**USER[ENT], "costCenter": "42"})),
    ("remove-extension-root", op("remove", ENT), changed(USER, ENT=GONE)),
    ("pathless-urn-key-with-object", op("add", None, {ENT: {"division": "EU"}}),
     changed(USER, ENT={**USER[ENT], "division": "EU"})),
    ("core-urn-prefixed-path", op("replace", f"{CORE_USER}:title", "CTO"),
     changed(USER, title="CTO")),
    ("add-opaque-extension", op("add", f"{CUSTOM}:worksiteId", "180"),
     changed(USER, CUSTOM={"worksiteId": "180"}, schemas=[CORE_USER, ENT, CUSTOM])),
    # The custom extension's own URN is its block, not an attribute "User" of "...:2.0".
    ("pathless-opaque-extension-block", op("add", None, {CUSTOM: {"worksiteId": "180"}}),
     changed(USER, CUSTOM={"worksiteId": "180"}, schemas=[CORE_USER, ENT, CUSTOM])),
    ("opaque-extension-root-path", op("replace", CUSTOM, {"worksiteId": "7", "floor": 2}),
     changed(USER, CUSTOM={"worksiteId": "7", "floor": 2}, schemas=[CORE_USER, ENT, CUSTOM])),
    ("set-password", op("replace", "password", "s3cret"), changed(USER, password="s3cret")),
    ("capitalised-path", op("replace", "DisplayName", "Ada L"),
     changed(USER, displayName="Ada L")),
    ("filter-or-not-pr",
     op("remove", 'emails[not (type eq "work") or (value sw "x" and display pr)]'),
     changed(USER, emails=[WORK])),
]


@pytest.mark.parametrize(("operation", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_operation_gives_expected_resource(operation, expected):
    """Each add/replace/remove shape lands exactly as RFC 7644 §3.5.2.1-3 says."""
    before = copy.deepcopy(USER)
    result = patch(USER, operation)
    assert result.resource == expected
    assert before == USER, "the input resource must not be mutated"
    assert result.member_changes == ()


def test_adds_in_many_operations_merge_as_one_would():
    """The operations of one PATCH share the list's element index (a PATCH of thousands of
    adds was quadratic): merging, then a filter, a listed removal and a whole replace in
    between, must still see every element as it is at that point."""
    result = patch(USER,
                   op("add", "emails", [{"value": "b@x.example"}]),
                   op("add", "emails", [{"value": "B@X.example", "display": "B"}]),
                   op("remove", 'emails[value eq "ada@home.example"]'),
                   op("add", "emails", [{"value": "ada@home.example", "type": "home"}]),
                   op("remove", "emails", [{"value": "b@x.example"}]),
                   op("add", "emails", [{"value": "b@x.example", "primary": True}]),
                   op("add", "emails", [{"value": "B@x.example"}]))
    assert result.resource["emails"] == [
        {**WORK, "primary": False}, {"value": "ada@home.example", "type": "home"},
        {"value": "B@x.example", "primary": True}]


def test_an_element_demoted_by_a_new_primary_still_merges_with_its_equal():
    """Addresses have no value: a whole element is what makes two equal. After the second
    primary demoted the first, adding the first (now primary false) again stored it twice:
    the shared index still held its key from before the demotion."""
    result = patch(changed(USER, addresses=GONE),
                   op("add", "addresses", [{"streetAddress": "1 Main St", "primary": True}]),
                   op("add", "addresses", [{"streetAddress": "2 High St", "primary": True}]),
                   op("add", "addresses", [{"streetAddress": "1 Main St", "primary": False}]))
    assert result.resource["addresses"] == [{"streetAddress": "1 Main St", "primary": False},
                                            {"streetAddress": "2 High St", "primary": True}]


def test_removing_an_absent_extension_attribute_changes_nothing():
    """remove of an unset enterprise attribute is a no-op and lists no new schema."""
    bare = {"schemas": [CORE_USER], "id": "u2", "userName": "bob"}
    result = patch(bare, op("remove", f"{ENT}:department"))
    assert (result.resource, result.touched) == (bare, frozenset())


def test_extension_attribute_on_user_without_the_extension_lists_its_schema():
    """Adding an enterprise attribute creates the block and lists the URN in schemas."""
    bare = {"schemas": [CORE_USER], "id": "u2", "userName": "bob"}
    result = patch(bare, op("Add", f"{ENT}:department", "Ops"))
    assert result.resource == {**bare, "schemas": [CORE_USER, ENT], ENT: {"department": "Ops"}}


@pytest.mark.parametrize(("value_filter", "kept"), [
    ('type eq "work"', ["home"]),
    ('type ne "work"', ["work"]),
    ('value co "home"', ["work"]),
    ('value sw "ADA@"', []),
    ('value ew ".example"', []),
    ("primary pr", ["home"]),
    ("primary eq true", ["home"]),
    ('primary eq "True"', ["home"]),
    ('type eq "work" and primary eq true', ["home"]),
    ('type eq "work" or type eq "home"', []),
    ('not (type eq "work")', ["work"]),
    ("type eq home", ["work"]),
], ids=["eq", "ne", "co", "sw-case-insensitive", "ew", "pr", "eq-boolean",
        "eq-string-boolean", "and", "or", "not", "unquoted-value"])
def test_value_filters_select_elements(value_filter, kept):
    """eq/ne/co/sw/ew/pr with and/or/not, caseExact from the schema (RFC 7644 §3.4.2.2)."""
    result = patch(USER, op("remove", f"emails[{value_filter}]"))
    assert [e["type"] for e in result.resource.get("emails", [])] == kept


BAD = [
    ("remove-without-path", [op("remove")], "noTarget", "requires a path"),
    ("pathless-add-not-object", [op("add", None, "x")], "invalidValue", "object"),
    ("pathless-replace-without-value", [op("replace")], "invalidSyntax", "value"),
    # add and replace MUST contain a value (RFC 7644 §3.5.2.1): without one, the path was
    # cleared as if the value were null, and a group lost every member.
    ("add-path-without-value", [op("add", "title")], "invalidSyntax", "'value'"),
    ("pathless-same-attribute-twice", [op("replace", None, {"title": "A", "TITLE": "B"})],
     "invalidValue", "given twice"),
    ("replace-path-without-value", [op("replace", "title")], "invalidSyntax", "'value'"),
    ("replace-members-without-value", [op("replace", "members")], "invalidSyntax", "'value'"),
    ("misspelled-values", [op("add", "title") | {"values": "x"}], "invalidSyntax", "'value'"),
    ("unknown-op", [op("move", "title", "x")], "invalidSyntax", "'op'"),
    ("op-not-string", [{"op": 1, "path": "title"}], "invalidSyntax", "'op'"),
    ("operation-not-object", ["add"], "invalidSyntax", "object"),
    ("path-not-string", [op("add", None, None) | {"path": 5}], "invalidPath", "path"),
    ("unknown-attribute", [op("add", "nickname2", "x")], "invalidPath", "nickname2"),
    ("unknown-sub-attribute", [op("add", "name.first", "x")], "invalidPath", "name.first"),
    ("malformed-path", [op("add", "emails[", "x")], "invalidPath", "emails["),
    ("sub-of-every-element-no-element", [op("add", "phoneNumbers.type", "work")], "noTarget",
     "no element to set 'type'"),
    ("sub-of-every-element-two-primaries", [op("replace", "emails.primary", True)],
     "invalidValue", "primary"),
    ("sub-of-simple-attribute", [op("add", "title.value", "x")], "invalidPath", "title.value"),
    ("filter-on-single-valued", [op("add", 'title[value eq "x"]', "x")], "invalidPath",
     "single-valued"),
    ("unknown-extension-attribute", [op("add", f"{ENT}:badge", "x")], "invalidPath", "badge"),
    ("foreign-core-schema", [op("add", f"{CORE_GROUP}:displayName", "x")], "invalidPath",
     CORE_GROUP),
    ("filter-missing-value", [op("remove", "emails[type eq]")], "invalidFilter",
     "found the end of the filter"),
    ("filter-unknown-operator", [op("remove", 'emails[type zz "a"]')], "invalidFilter", "zz"),
    ("filter-unknown-attribute", [op("remove", 'emails[kind eq "a"]')], "invalidFilter",
     "emails.kind"),
    ("filter-unbalanced", [op("remove", 'emails[(type eq "a"]')], "invalidFilter", ")"),
    ("filter-dangling-and", [op("remove", 'emails[type eq "a" and]')], "invalidFilter",
     "found the end of the filter"),
    ("filter-trailing-token", [op("remove", 'emails[type eq "a" "b"]')], "invalidFilter",
     "Unexpected"),
    ("filter-unterminated-string", [op("remove", 'emails[type eq "a]')], "invalidFilter",
     "missing its closing quote"),
    ("filter-co-on-boolean", [op("remove", "emails[primary co true]")], "invalidFilter",
     "boolean"),
    ("read-only-id", [op("replace", "id", "u9")], "mutability", "id"),
    ("read-only-meta", [op("replace", "meta.version", "x")], "mutability", "meta"),
    ("read-only-groups", [op("add", "groups", [{"value": "g2"}])], "mutability", "groups"),
    ("read-only-manager-display", [op("replace", f"{ENT}:manager.displayName", "x")],
     "mutability", "manager.displayName' is readOnly"),
    ("read-only-roster-extension", [op("replace", f"{ROSTER_USER}:organization", "x")],
     "mutability", "organization"),
    ("remove-read-only-extension", [op("remove", ROSTER_USER)], "mutability", ROSTER_USER),
    ("pathless-different-id", [op("replace", None, {"id": "u9"})], "mutability", "id"),
    ("remove-filter-matches-nothing", [op("remove", 'emails[type eq "other"]')], "noTarget",
     "emails"),
    ("remove-filter-sub-matches-nothing", [op("remove", 'emails[type eq "other"].display')],
     "noTarget", "emails"),
    ("replace-non-eq-filter-matches-nothing",
     [op("replace", 'emails[value co "zzz"].value', "x")], "noTarget", "emails"),
    # The element would have no value: kept, it said nothing; dropped, a silent 200 that
    # still demoted the work email's primary (RFC 7643 §2.4).
    ("add-filter-sub-creates-no-value", [op("add", 'emails[type eq "other"].primary', True)],
     "noTarget", "no 'value'"),
    ("replace-filter-element-creates-no-value",
     [op("replace", 'phoneNumbers[type eq "home"]', {"primary": True})], "noTarget",
     "no 'value'"),
    ("bad-boolean", [op("replace", "active", "maybe")], "invalidValue", "active"),
    ("number-for-string", [op("replace", "title", 5)], "invalidValue", "title"),
    ("string-for-complex", [op("replace", "name", "Ada")], "invalidValue", "name"),
    ("string-for-multi-valued", [op("add", "emails", "a@x")], "invalidValue", "emails"),
    ("bad-element-type", [op("add", "emails", [{"value": 1}])], "invalidValue",
     "emails.value"),
    ("two-primaries", [op("add", "emails", [{"value": "a", "primary": True},
                                             {"value": "b", "primary": True}])],
     "invalidValue", "primary"),
    ("remove-required-userName", [op("remove", "userName")], "invalidValue", "userName"),
    ("clear-required-userName", [op("replace", "userName", "")], "invalidValue", "userName"),
    ("null-required-userName", [op("replace", "userName", None)], "invalidValue", "userName"),
    ("second-operation-fails", [op("replace", "title", "CTO"), op("add", "bogus", 1)],
     "invalidPath", "Operations[1]"),
]


@pytest.mark.parametrize(("operations", "scim_type", "fragment"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_bad_operations_raise_scim_errors(operations, scim_type, fragment):
    """Every malformed or forbidden operation is a 400 ScimError with the RFC's scimType."""
    before = copy.deepcopy(USER)
    with pytest.raises(ScimError) as err:
        patch(USER, *operations)
    assert (err.value.status, err.value.scim_type) == (400, scim_type)
    assert fragment in err.value.detail
    assert before == USER


@pytest.mark.parametrize(("body", "fragment"), [
    ([], "JSON object"),
    ({"Operations": [op("add", "title", "x")]}, "schemas"),
    ({"schemas": [CORE_USER], "Operations": [op("add", "title", "x")]}, "schemas"),
    ({"schemas": PATCH_OP, "Operations": [op("add", "title", "x")]}, "schemas"),
    ({"schemas": [PATCH_OP]}, "Operations"),
    ({"schemas": [PATCH_OP], "Operations": []}, "Operations"),
    ({"schemas": [PATCH_OP], "Operations": {"op": "add"}}, "Operations"),
], ids=["not-object", "no-schemas", "wrong-schema", "schemas-not-list", "no-operations",
        "empty-operations", "operations-not-list"])
def test_malformed_message_is_invalid_syntax(body, fragment):
    """A body that is not a PatchOp message is 400 invalidSyntax (RFC 7644 §3.5.2)."""
    with pytest.raises(ScimError) as err:
        apply_patch(USER, body, resource_type="User", notes=[])
    assert (err.value.status, err.value.scim_type) == (400, "invalidSyntax")
    assert fragment in err.value.detail


def test_group_display_name_is_required():
    """Removing a Group's displayName is 400 invalidValue (RFC 7643 §4.2 required)."""
    with pytest.raises(ScimError) as err:
        patch(GROUP, op("remove", "displayName"), resource_type="Group")
    assert err.value.scim_type == "invalidValue"


@pytest.mark.parametrize(("operations", "touched"), [
    ([op("replace", "active", False)], {"active"}),
    ([op("replace", "active", True)], set()),
    ([op("replace", "title", "CTO"), op("replace", "title", "Engineer")], set()),
    ([op("replace", f"{ENT}:department", "Ops")], {f"{ENT}:department"}),
    ([op("replace", None, {"name.givenName": "A", "emails": []})], {"name", "emails"}),
    ([op("add", "password", "x")], {"password"}),
], ids=["deactivate", "same-value", "changed-back", "enterprise", "pathless", "password"])
def test_touched_names_what_actually_changed(operations, touched):
    """touched lists top-level attributes whose value changed, so the caller can react."""
    assert patch(USER, *operations).touched == touched


MEMBER_CASES = [
    ("add-list", [op("add", "members", [{"value": "u1"}, {"value": "u2", "display": "B"}])],
     [MemberChange("add", ("u1", "u2"))]),
    ("add-single-object", [op("add", "members", {"value": "u1"})],
     [MemberChange("add", ("u1",))]),
    ("add-deduplicates", [op("add", "members", [{"value": "u1"}, {"value": "u1"}])],
     [MemberChange("add", ("u1",))]),
    ("add-empty-list-is-nothing", [op("add", "members", [])], []),
    ("pathless-add", [op("add", None, {"members": [{"value": "u1"}]})],
     [MemberChange("add", ("u1",))]),
    ("remove-filter", [op("remove", 'members[value eq "u1"]')],
     [MemberChange("remove", ("u1",))]),
    ("remove-filter-or", [op("remove", 'members[value eq "u1" or value eq "u2"]')],
     [MemberChange("remove", ("u1", "u2"))]),
    ("remove-filter-and", [op("remove", 'members[value eq "u1" and value eq "u2"]')],
     [MemberChange("remove", ())]),
    ("remove-filter-type-user", [op("remove", 'members[value eq "u1" and type eq "User"]')],
     [MemberChange("remove", ("u1",))]),
    ("remove-filter-type-other", [op("remove", 'members[type eq "Group"]')],
     [MemberChange("remove", ())]),
    ("remove-filter-every-user", [op("remove", 'members[type eq "USER"]')],
     [MemberChange("remove_all")]),
    ("remove-without-value-removes-all", [op("remove", "members")],
     [MemberChange("remove_all")]),
    ("replace-list", [op("replace", "members", [{"value": "u3"}])],
     [MemberChange("replace", ("u3",))]),
    ("replace-empty", [op("replace", "members", [])], [MemberChange("replace", ())]),
    ("order-kept", [op("remove", 'members[value eq "u1"]'), op("add", "members",
                                                                [{"value": "u1"}])],
     [MemberChange("remove", ("u1",)), MemberChange("add", ("u1",))]),
]


@pytest.mark.parametrize(("operations", "changes"), [c[1:] for c in MEMBER_CASES],
                         ids=[c[0] for c in MEMBER_CASES])
def test_member_operations_become_member_changes(operations, changes):
    """Members are never in the dict: each operation becomes a MemberChange, in order."""
    result = patch(GROUP, *operations, resource_type="Group")
    assert result.member_changes == tuple(changes)
    assert result.resource == GROUP
    assert result.touched == ({"members"} if changes else set())


@pytest.mark.parametrize(("operation", "scim_type"), [
    (op("replace", 'members[value eq "u1"].value', "u2"), "mutability"),
    (op("add", 'members[value eq "u1"]', {"value": "u1"}), "mutability"),
    (op("remove", 'members[type ne "User"]'), "invalidFilter"),
    (op("remove", 'members[value co "u"]'), "invalidFilter"),
    (op("add", "members", [{"value": 7}]), "invalidValue"),
    (op("add", "members", "u1"), "invalidValue"),
], ids=["modify-member-sub-attribute", "add-with-filter", "filter-on-type",
        "filter-not-eq", "id-not-string", "bare-string"])
def test_bad_member_operations(operation, scim_type):
    """Member operations the engine cannot honour without loading members are rejected."""
    with pytest.raises(ScimError) as err:
        patch(GROUP, operation, resource_type="Group")
    assert (err.value.status, err.value.scim_type) == (400, scim_type)


FUZZ_PATHS = ["title", "name", "name.givenName", "emails", 'emails[type eq "work"]',
              'emails[type eq "work"].value', "emails[primary eq true].primary", "members",
              'members[value eq "a"]', 'members[value eq "a"].value', ENT, f"{ENT}:manager",
              f"{ENT}:manager.value", "urn:x:y:z:w", "active", "id", "meta", "groups",
              "emails[", "emails[]", "[x]", ".", "a.b.c", "emails[not (", "emails[()]",
              "emails[value eq 1.5e]", "urn:", "urn:a", ROSTER_USER, "displayName", "userName",
              1, None, ""]
FUZZ_VALUES = [None, "", "x", 1, 1.5, True, "True", [], {}, [{}], [None], [1], ["a"],
               {"value": "a"}, [{"value": "a", "primary": True}], {"value": None},
               {"givenName": 1}, {"x": 1}, [[1]], {"value": ["a"]}, {"type": "work"},
               {"displayName": "y", "id": "u1"}, {ENT: "x"}, {ENT: {"manager": 1}},
               {'emails[type eq "x"].value': 3}, {"name.givenName": None}, {"members": "x"},
               {"members": [{"value": None}]}]


@pytest.mark.parametrize("seed", range(4))
def test_random_operations_raise_only_scim_errors(seed):
    """Whatever the IdP sends, the engine returns a result or raises ScimError (never a 500)."""
    rng = random.Random(seed)
    for _ in range(500):
        operations = []
        for _ in range(rng.randint(1, 3)):
            item: dict = {"op": rng.choice(["add", "Remove", "replace", "x", None, 1])}
            if rng.random() < 0.7:
                item["path"] = rng.choice(FUZZ_PATHS)
            if rng.random() < 0.8:
                item["value"] = rng.choice(FUZZ_VALUES)
            operations.append(item)
        resource_type = rng.choice(["User", "Group"])
        statuses = []
        try:
            patch(USER if resource_type == "User" else GROUP, *operations,
                  resource_type=resource_type)
        except ScimError as error:
            statuses.append(error.status)
        assert statuses in ([], [400])
