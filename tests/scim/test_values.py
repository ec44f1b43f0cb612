"""Normalisation and validation of SCIM values against the schema (RFC 7643 §2, §7): pure."""

from __future__ import annotations

import pytest

from app.scim import dialect
from app.scim.errors import ScimError
from app.scim.schema import CORE_GROUP, CORE_USER, ENTERPRISE_USER, ROSTER_USER, Attribute
from app.scim.values import (
    coerce_boolean,
    normalise_resource,
    normalise_value,
    validate_resource,
)

CUSTOM = "urn:ietf:params:scim:schemas:extension:custom:2.0:User"
MS_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"


def user(**attrs):
    return {"schemas": [CORE_USER], "userName": "ada@acme.example", **attrs}


@pytest.mark.parametrize(("raw", "expected", "fired"), [
    (True, True, False),
    (False, False, False),
    ("True", True, True),
    ("False", False, True),
    ("false", False, True),
    ("TRUE", True, True),
], ids=["json-true", "json-false", "True", "False", "false", "TRUE"])
def test_coerce_boolean_accepts_json_and_entra_strings(raw, expected, fired):
    """JSON booleans pass; Entra's string booleans are coerced and noted (issue 5)."""
    notes: list[str] = []
    assert coerce_boolean(raw, notes) is expected
    assert (dialect.STRING_BOOLEAN in notes) is fired


@pytest.mark.parametrize("raw", ["yes", "", 1, 0, None, [True]],
                         ids=["yes", "empty", "one", "zero", "null", "list"])
def test_coerce_boolean_rejects_anything_else(raw):
    """Anything but a boolean or "true"/"false" is 400 invalidValue."""
    with pytest.raises(ScimError) as err:
        coerce_boolean(raw, [], where="active")
    assert (err.value.status, err.value.scim_type) == (400, "invalidValue")
    assert "active" in err.value.detail


@pytest.mark.parametrize(("body", "expected", "notes_fired"), [
    (user(UserName="x") | {"userName": None}, {"userName": "x"}, [dialect.CAPITALISED_ATTRIBUTE]),
    (user(active="False"), {"active": False}, [dialect.STRING_BOOLEAN]),
    (user(name={"GivenName": "Ada", "familyName": "L"}),
     {"name": {"givenName": "Ada", "familyName": "L"}}, [dialect.CAPITALISED_ATTRIBUTE]),
    (user(emails=[{"value": "a@x", "type": "work", "primary": "True"}]),
     {"emails": [{"value": "a@x", "type": "work", "primary": True}]}, [dialect.STRING_BOOLEAN]),
    (user(emails={"value": "a@x"}), {"emails": [{"value": "a@x"}]}, []),
    (user(emails=[{"type": "work"}, {"value": "b@x"}]), {"emails": [{"value": "b@x"}]}, []),
    (user(title=""), {}, [dialect.EMPTY_VALUE_CLEARS]),
    (user(title=None, emails=[]), {}, []),
    (user(id="client-id", meta={"resourceType": "User"}, groups=[{"value": "g"}]), {}, []),
    (user(password="s3cret", locale="en-US", externalId="00u1"),
     {"password": "s3cret", "locale": "en-US", "externalId": "00u1"}, []),
], ids=["capitalised-name", "string-boolean", "sub-attribute-case", "boolean-in-element",
        "single-object-wrapped", "element-without-value-dropped", "empty-string-clears",
        "null-and-empty-list-unassigned", "readonly-ignored", "okta-runtime-create"])
def test_core_user_attributes_are_made_canonical(body, expected, notes_fired):
    """Names canonical, booleans coerced, readOnly and unassigned values dropped (RFC 7643 §2)."""
    notes: list[str] = []
    out = normalise_resource(body, "User", notes=notes)
    assert out == {"schemas": [CORE_USER], "userName": out["userName"], **expected}
    assert notes == notes_fired


@pytest.mark.parametrize(("manager", "expected", "fired"), [
    ({"value": "m1"}, {"value": "m1"}, []),
    ([{"value": "m1"}], {"value": "m1"}, []),
    ("m1", {"value": "m1"}, [dialect.BARE_STRING_MANAGER]),
    ({"value": "m1", "displayName": "Boss"}, {"value": "m1"}, []),
    ({"value": ""}, None, [dialect.EMPTY_VALUE_CLEARS]),
    ("", None, [dialect.EMPTY_VALUE_CLEARS]),
], ids=["object", "one-element-list", "bare-string", "displayName-readonly", "empty-value",
        "empty-string"])
def test_enterprise_manager_shapes(manager, expected, fired):
    """Every manager shape Entra sends becomes {"value": id} or nothing (issue 5)."""
    notes: list[str] = []
    body = user(**{ENTERPRISE_USER: {"manager": manager, "department": "Sales"}})
    out = normalise_resource(body, "User", notes=notes)
    block = {"department": "Sales"} | ({"manager": expected} if expected else {})
    assert out[ENTERPRISE_USER] == block
    assert ENTERPRISE_USER in out["schemas"]
    assert notes == fired


def test_urn_prefixed_top_level_key_lands_in_its_extension():
    """`urn:...:enterprise:2.0:User:department` as a key goes into the enterprise block."""
    out = normalise_resource(user(**{f"{ENTERPRISE_USER}:department": "Ops"}), "User", notes=[])
    assert out[ENTERPRISE_USER] == {"department": "Ops"}


def test_bare_extension_attributes_at_the_top_level_land_in_their_extension():
    """Microsoft's SCIM tutorial sends `"department"` and `"manager"` at the top level: they
    resolve as in filters (core first, then the enterprise extension); nulls are unassigned."""
    out = normalise_resource(user(department="Ops", Manager={"value": "m1"}), "User", notes=[])
    assert out[ENTERPRISE_USER] == {"department": "Ops", "manager": {"value": "m1"}}
    assert out["schemas"] == [CORE_USER, ENTERPRISE_USER]
    assert ENTERPRISE_USER not in normalise_resource(user(department=None, manager=None),
                                                     "User", notes=[])
    both = user(department="Ops", **{ENTERPRISE_USER: {"Department": "Sales"}})
    with pytest.raises(ScimError, match="given twice"):
        normalise_resource(both, "User", notes=[])


def test_unknown_extension_block_is_kept_opaque_and_listed():
    """Entra sends custom extension blocks without listing them in schemas; keep them as sent.

    Shape from https://learn.microsoft.com/en-us/answers/questions/1684621/
    """
    body = user(**{CUSTOM: {"employeeNumber": "99887766", "worksiteId": "180"}})
    out = normalise_resource(body, "User", notes=[])
    assert out[CUSTOM] == {"employeeNumber": "99887766", "worksiteId": "180"}
    assert out["schemas"] == [CORE_USER, CUSTOM]


def test_roster_access_block_is_read_only_and_ignored():
    """The Roster access extension is readOnly: whatever a client sends is ignored."""
    out = normalise_resource(user(**{ROSTER_USER: {"organization": "x"}}), "User", notes=[])
    assert ROSTER_USER not in out


def test_entra_group_create_with_microsoft_schema():
    """Entra creates groups with an extra Microsoft schema URN and empty members (issue 5)."""
    body = {"schemas": [CORE_GROUP, MS_GROUP], "externalId": "8aa1", "displayName": "Sales",
            "members": [], "meta": {"resourceType": "Group"}}
    out = normalise_resource(body, "Group", notes=[])
    assert out == {"schemas": [CORE_GROUP, MS_GROUP], "externalId": "8aa1",
                   "displayName": "Sales"}


def test_group_members_drop_read_only_display():
    """Okta sends members with display; display is readOnly and ignored (RFC 7643 §2.2)."""
    body = {"schemas": [CORE_GROUP], "displayName": "G",
            "members": [{"value": "u1", "display": "Ada"}]}
    assert normalise_resource(body, "Group", notes=[])["members"] == [{"value": "u1"}]


@pytest.mark.parametrize(("body", "scim_type", "detail"), [
    ([], "invalidSyntax", "JSON object"),
    ({"userName": "a"}, "invalidSyntax", "schemas"),
    ({"schemas": [CORE_GROUP], "userName": "a"}, "invalidSyntax", CORE_USER),
    ({"schemas": "x", "userName": "a"}, "invalidSyntax", "schemas"),
    (user(userName=""), "invalidValue", "userName"),
    ({"schemas": [CORE_USER]}, "invalidValue", "userName"),
    (user(nickname2="x"), "invalidValue", "nickname2"),
    (user(name={"first": "Ada"}), "invalidValue", "name.first"),
    (user(**{ENTERPRISE_USER: {"badge": "1"}}), "invalidValue", "badge"),
    (user(**{ENTERPRISE_USER: "Sales"}), "invalidValue", ENTERPRISE_USER),
    (user(**{CUSTOM: "x"}), "invalidValue", CUSTOM),
    (user(**{CORE_GROUP: {}}), "invalidValue", CORE_GROUP),
    (user(active="maybe"), "invalidValue", "active"),
    (user(active=1), "invalidValue", "active"),
    (user(title=5), "invalidValue", "title"),
    (user(name="Ada"), "invalidValue", "name"),
    (user(emails="a@x"), "invalidValue", "emails"),
    (user(emails=[{"value": 5}]), "invalidValue", "emails.value"),
    (user(emails=[{"value": "a", "primary": True}, {"value": "b", "primary": True}]),
     "invalidValue", "primary"),
    (user(userName="a", UserName="b"), "invalidValue", "twice"),
    (user(**{ENTERPRISE_USER: {"manager": [{"value": "a"}, {"value": "b"}]}}),
     "invalidValue", "single-valued"),
    # binary is base64 (RFC 7643 §2.3.6).
    (user(x509Certificates=[{"value": "***not base64***"}]), "invalidValue",
     "x509Certificates.value"),
    (user(emails=[{"value": f"e{i}@x"} for i in range(101)]), "invalidValue",
     "'emails' holds at most 100 values (101 given)"),
    (user(addresses=[{"locality": "x"}] * 101), "invalidValue", "at most 100"),
], ids=["not-object", "no-schemas", "wrong-core-schema", "schemas-not-list", "empty-userName",
        "missing-userName", "unknown-attribute", "unknown-sub-attribute",
        "unknown-enterprise-attribute", "enterprise-not-object", "custom-not-object",
        "foreign-schema-block", "bad-boolean", "number-as-boolean", "number-as-string",
        "string-as-complex", "string-as-multi-valued", "bad-sub-attribute-type",
        "two-primaries", "duplicate-in-case", "two-managers", "binary-not-base64",
        "too-many-emails", "too-many-addresses"])
def test_invalid_bodies_get_precise_errors(body, scim_type, detail):
    """Each malformed body is a 400 ScimError naming what is wrong, never another exception."""
    with pytest.raises(ScimError) as err:
        normalise_resource(body, "User", notes=[])
    assert (err.value.status, err.value.scim_type) == (400, scim_type)
    assert detail in err.value.detail


def test_a_hundred_values_are_accepted():
    """The limit is on the 101st element, not before it."""
    out = normalise_resource(user(emails=[{"value": f"e{i}@x"} for i in range(100)]), "User",
                             notes=[])
    assert len(out["emails"]) == 100


def test_binary_values_are_base64_with_line_breaks_allowed():
    """A PEM body's base64, wrapped at 64 columns as it usually is, is binary (§2.3.6)."""
    pem = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYX\nGBkaGxwdHh8gISIjJCUmJygpKissLS4v\n"
    out = normalise_resource(user(x509Certificates=[{"value": pem}]), "User", notes=[])
    assert out["x509Certificates"] == [{"value": pem}]


def test_group_requires_display_name():
    """displayName is required on Group (RFC 7643 §4.2)."""
    with pytest.raises(ScimError, match="displayName"):
        validate_resource({"schemas": [CORE_GROUP], "id": "g1"}, "Group")


def test_validate_resource_accepts_a_served_resource():
    """A resource as the serializer returns it (id, meta, groups) validates."""
    validate_resource(user(id="u1", meta={"resourceType": "User", "version": 'W/"1"'},
                           groups=[{"value": "g1", "display": "G"}],
                           **{ENTERPRISE_USER: {"manager": {"value": "m", "displayName": "M"}},
                              ROSTER_USER: {"organization": "acme", "grants": []}}), "User")


@pytest.mark.parametrize(("value", "ok"), [
    ("2026-12-03T17:00:00Z", True), ("2026-12-03T17:00:00+01:00", True),
    ("2026-12-03", False), ("yesterday", False),
], ids=["utc", "offset", "date-only", "words"])
def test_datetime_values_must_be_xsd_datetime(value, ok):
    """dateTime attributes must be xsd:dateTime strings (RFC 7643 §2.3.5)."""
    attr = Attribute("when", type="dateTime")
    if ok:
        assert normalise_value(attr, value, notes=[], where="when") == value
    else:
        with pytest.raises(ScimError, match="dateTime"):
            normalise_value(attr, value, notes=[], where="when")
