"""SCIM filter translation (RFC 7644 §3.4.2.2), run as SQL on the real database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from app.models import Group, Membership, User
from app.scim import dialect as notes_
from app.scim.errors import ScimError
from app.scim.filters import (
    prepared_filter,
    resolve_attribute,
    split_eq_string,
    translate_filter,
)
from app.scim.listing import parse_list_params, run_list

BOB = "0000000b-abcd-4ef0-8abc-def000000000"
GROUP_ENG = "1000000e-abcd-4ef0-8abc-def000000000"
GROUP_SALES = "1000000a-abcd-4ef0-8abc-def000000000"
GUID = "6f1c3a7e-0d4b-4a6e-9b1e-2f3c4d5e6f70"
ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"


def _at(day: int) -> datetime:
    return datetime(2026, 1, day, 12, 0, tzinfo=UTC)


@pytest.fixture
def people(db, tenant, other_tenant):
    """Four live users, one deleted, one in another directory; three groups."""
    org, directory = tenant.org.id, tenant.directory.id

    def user(key: str, **kw):
        kw.setdefault("user_name", f"{key}@acme.com")
        return User(id=f"0000000{kw.pop('n')}-abcd-4ef0-8abc-def000000000", directory_id=directory,
                    organization_id=org, **kw)

    with db.transaction() as s:
        bob = user("bob", n="b", user_name="Bob@Acme.com", external_id="EXT-B2",
                   display_name="Bob Jones", title="Manager", active=True,
                   emails=[{"value": "Bob@Acme.com", "type": "work"}], department="Sales",
                   created_at=_at(2), updated_at=_at(20))
        s.add(bob)
        s.flush()
        s.add_all([
            user("alice", n="a", user_name="Alice@Acme.com", external_id="ext-A1",
                 display_name="Alice Smith", given_name="Alice", family_name="Smith",
                 title="Engineer", user_type="Employee", active=True,
                 emails=[{"value": "alice@acme.com", "type": "work", "primary": True},
                         {"value": "alice@home.org", "type": "home"}],
                 phone_numbers=[{"value": "+1 555 0100", "type": "work"}],
                 department="R&D", cost_center="CC-1", employee_number="1001",
                 organization_name="Acme", division="West", manager_id=bob.id,
                 created_at=_at(1), updated_at=_at(10)),
            user("carol", n="c", user_name="carol@globex.com", active=False,
                 emails=[{"value": "carol@work.acme.com", "type": "work", "primary": False},
                         {"value": "carol@acme.com", "type": "home", "primary": "True"}],
                 manager_id=bob.id, created_at=_at(3), updated_at=_at(3)),
            user("dave", n="d", user_name="dave_o'neil@acme.com", external_id=GUID,
                 display_name="Dave 100%", active=True, emails=[],
                 addresses=[{"locality": "Berlin", "type": "work"}],
                 created_at=_at(4), updated_at=_at(4)),
            user("erin", n="e", deleted_at=_at(5), created_at=_at(5), updated_at=_at(5)),
        ])
        s.add(User(directory_id=other_tenant.directory.id,
                   organization_id=other_tenant.org.id, user_name="alice@acme.com"))
        eng = Group(id=GROUP_ENG, directory_id=directory,
                    organization_id=org, display_name="Engineering", external_id="g-eng",
                    created_at=_at(1), updated_at=_at(1))
        sales = Group(id=GROUP_SALES, directory_id=directory,
                      organization_id=org, display_name="Sales", created_at=_at(2),
                      updated_at=_at(8))
        empty = Group(id="1000000f-abcd-4ef0-8abc-def000000000", directory_id=directory,
                      organization_id=org, display_name="Empty", created_at=_at(3),
                      updated_at=_at(3))
        s.add_all([eng, sales, empty])
        s.flush()
        s.add_all([Membership(group_id=eng.id, user_id="0000000a-abcd-4ef0-8abc-def000000000"),
                   Membership(group_id=eng.id, user_id=bob.id),
                   Membership(group_id=sales.id, user_id=bob.id),
                   Membership(group_id=sales.id, user_id="0000000c-abcd-4ef0-8abc-def000000000"),
                   Membership(group_id=empty.id, user_id="0000000e-abcd-4ef0-8abc-def000000000")])
    return tenant


def users_matching(db, tenant, text: str, notes: list[str] | None = None) -> set[str]:
    """Short names of the live users of the tenant's directory matching the filter."""
    base = (User.directory_id == tenant.directory.id) & User.deleted_at.is_(None)
    with db.transaction(readonly=True) as s:
        where = translate_filter(text, "User", dialect=db.dialect, notes=notes)
        names = s.scalars(select(User.user_name).where(base, where))
        return {n.split("@")[0].split("_")[0].lower() for n in names}


def groups_matching(db, tenant, text: str) -> set[str]:
    """Display names of the tenant's groups matching the filter."""
    with db.transaction(readonly=True) as s:
        where = translate_filter(text, "Group", dialect=db.dialect)
        return set(s.scalars(select(Group.display_name).where(
            Group.directory_id == tenant.directory.id, where)))


ALL = {"alice", "bob", "carol", "dave"}

USER_CASES = [
    # Every operator on a caseExact=false string.
    ('userName eq "alice@acme.com"', {"alice"}),
    ('userName eq "ALICE@ACME.COM"', {"alice"}),
    ('userName ne "alice@acme.com"', {"bob", "carol", "dave"}),
    ('userName co "ACME"', {"alice", "bob", "dave"}),
    ('userName sw "CAR"', {"carol"}),
    ('userName ew "@GLOBEX.com"', {"carol"}),
    ('userName gt "bob@acme.com"', {"carol", "dave"}),
    ('userName ge "bob@acme.com"', {"bob", "carol", "dave"}),
    ('userName lt "bob@acme.com"', {"alice"}),
    ('userName le "bob@acme.com"', {"alice", "bob"}),
    ("userName pr", ALL),
    ('userName co ""', ALL),
    # LIKE wildcards and quotes in values are plain characters.
    ('userName co "_o\'"', {"dave"}),
    ('displayName co "100%"', {"dave"}),
    ('displayName co "%"', {"dave"}),
    ('displayName ew "0%"', {"dave"}),
    # caseExact attributes: id and externalId.
    ('externalId eq "ext-A1"', {"alice"}),
    ('externalId eq "EXT-A1"', set()),
    ('externalId co "XT"', {"bob"}),
    ('externalId co "xt"', {"alice"}),
    ('externalId sw "EXT"', {"bob"}),
    ('externalId ew "a1"', set()),
    ("externalId pr", {"alice", "bob", "dave"}),
    ('externalId ne "ext-A1"', {"bob", "carol", "dave"}),
    ("externalId eq null", {"carol"}),
    ('id eq "0000000c-abcd-4ef0-8abc-def000000000"', {"carol"}),
    ('id eq "0000000C-ABCD-4EF0-8ABC-DEF000000000"', set()),
    # Other single-valued attributes.
    ('displayName eq "bob jones"', {"bob"}),
    ("displayName pr", {"alice", "bob", "dave"}),
    ('title eq "engineer"', {"alice"}),
    ('title ne "engineer"', {"bob", "carol", "dave"}),
    ('userType eq "Employee"', {"alice"}),
    ('name.givenName eq "alice"', {"alice"}),
    ('name.familyName sw "Sm"', {"alice"}),
    ("name pr", {"alice"}),
    ("active eq true", {"alice", "bob", "dave"}),
    ("active eq false", {"carol"}),
    ("active ne true", {"carol"}),
    ("active pr", ALL),
    # Logical operators, precedence and grouping.
    ('title eq "Engineer" or title eq "Manager"', {"alice", "bob"}),
    ('title pr and active eq true', {"alice", "bob"}),
    ('userName sw "a" or userName sw "b" and active eq false', {"alice"}),
    ('(userName sw "a" or userName sw "b") and active eq true', {"alice", "bob"}),
    ('active eq true and userName sw "a" or userName sw "c"', {"alice", "carol"}),
    ('not (title pr)', {"carol", "dave"}),
    ('not (userName eq "alice@acme.com" or userName eq "bob@acme.com")', {"carol", "dave"}),
    ('not (not (title eq "Manager"))', {"bob"}),
    ('userName Eq "bob@acme.com" AND active EQ true', {"bob"}),
    # Multi-valued JSON attributes: any value matches.
    ('emails eq "ALICE@home.org"', {"alice"}),
    ('emails.value eq "alice@home.org"', {"alice"}),
    ('emails.value eq "bob@acme.com"', {"bob"}),
    ('emails.value co "acme.com"', {"alice", "bob", "carol"}),
    ('emails.value ew ".org"', {"alice"}),
    ('emails.type eq "home"', {"alice", "carol"}),
    ("emails pr", {"alice", "bob", "carol"}),
    ("emails.primary eq true", {"alice", "carol"}),
    ("emails.primary eq false", {"carol"}),
    ('phoneNumbers.value sw "+1"', {"alice"}),
    ('addresses.locality eq "berlin"', {"dave"}),
    ("addresses pr", {"dave"}),
    # ne holds when any value differs (RFC 7644 §3.4.2.2): dave, without emails, does not
    # match it; "no email is ..." is not (... eq ...), which dave does.
    ('emails.value ne "bob@acme.com"', {"alice", "carol"}),
    ('not (emails.value eq "bob@acme.com")', {"alice", "carol", "dave"}),
    # Complex value filters.
    ('emails[type eq "work" and value co "@acme.com"]', {"alice", "bob"}),
    ('emails[type eq "work" and value co "acme.com"]', {"alice", "bob", "carol"}),
    ('emails[type eq "home" and value ew "acme.com"]', {"carol"}),
    ('emails[type eq "home" or primary eq true]', {"alice", "carol"}),
    ('emails[not (type eq "work")]', {"alice", "carol"}),
    ('emails[type eq "work"].value ew "acme.com"', {"alice", "bob", "carol"}),
    ('emails[type eq "work" and value eq "alice@home.org"]', set()),
    ('name[givenName eq "Alice"]', {"alice"}),
    ('emails[type eq "work"] and not (emails[type eq "home"])', {"bob"}),
    # Enterprise extension, with and without the URN.
    ('department eq "sales"', {"bob"}),
    (f'{ENT}:department eq "R&D"', {"alice"}),
    (f'{ENT}:costCenter eq "CC-1"', {"alice"}),
    (f'{ENT}:employeeNumber eq "1001"', {"alice"}),
    (f'{ENT}:organization eq "acme"', {"alice"}),
    ('division eq "West"', {"alice"}),
    (f'{ENT}:manager.value eq "{BOB}"', {"alice", "carol"}),
    (f'manager eq "{BOB.upper()}"', {"alice", "carol"}),
    ("manager.value pr", {"alice", "carol"}),
    ('manager.displayName eq "bob jones"', {"alice", "carol"}),
    ('manager.displayName pr', {"alice", "carol"}),
    (f'{CORE}:userName eq "dave_o\'neil@acme.com"', {"dave"}),
    (f'{CORE}:name.givenName pr', {"alice"}),
    # Groups of a user, through the memberships table.
    (f'groups.value eq "{GROUP_SALES}"', {"bob", "carol"}),
    (f'groups eq "{GROUP_ENG.upper()}"', {"alice", "bob"}),
    ('groups.display eq "engineering"', {"alice", "bob"}),
    (f'groups[value eq "{GROUP_ENG}" and display sw "Eng"]', {"alice", "bob"}),
    (f'groups[value eq "{GROUP_ENG}" and display sw "Sales"]', set()),
    ("groups pr", {"alice", "bob", "carol"}),
    ('not (groups pr)', {"dave"}),
    # Dates.
    ('meta.created gt "2026-01-02T12:00:00Z"', {"carol", "dave"}),
    ('meta.created ge "2026-01-02T12:00:00Z"', {"bob", "carol", "dave"}),
    ('meta.created lt "2026-01-02T13:00:00+00:30"', {"alice", "bob"}),
    ('meta.created eq "2026-01-03T12:00:00.000Z"', {"carol"}),
    ('meta.lastModified le "2026-01-05T00:00:00"', {"carol", "dave"}),
    ('meta.lastModified gt "2026-01-15T00:00:00Z" and meta.created lt "2026-01-02T00:00:00Z"',
     set()),
    ('meta.resourceType eq "User"', ALL),
    # A fraction finer than the microseconds stored is compared exactly, not truncated.
    ('meta.created eq "2026-01-03T12:00:00.000000000Z"', {"carol"}),
    ('meta.created eq "2026-01-02T12:00:00.0000001Z"', set()),
    ('meta.created ne "2026-01-02T12:00:00.0000001Z"', ALL),
    ('meta.created ge "2026-01-02T12:00:00.0000001Z"', {"carol", "dave"}),
    ('meta.created lt "2026-01-02T12:00:00.0000001Z"', {"alice", "bob"}),
    ('meta.created gt "2026-01-02T11:59:59.9999999Z"', {"bob", "carol", "dave"}),
    ('meta.created le "2026-01-02T11:59:59.9999999Z"', {"alice"}),
    # 24:00:00 is the first instant of the next day (xsd:dateTime).
    ('meta.created lt "2026-01-02T24:00:00Z"', {"alice", "bob"}),
    ('meta.created ge "2026-01-02T24:00:00.000-12:00"', {"carol", "dave"}),
    # String escapes (RFC 7159) in values.
    ('displayName eq "Bob \\u004aones"', {"bob"}),
]


@pytest.mark.parametrize(("text", "expected"), USER_CASES, ids=[c[0] for c in USER_CASES])
def test_user_filter_matches_exactly_the_expected_users(db, people, text, expected):
    """Each filter selects exactly the users the RFC semantics say, never deleted ones."""
    assert users_matching(db, people, text) == expected


GROUP_CASES = [
    ('displayName eq "ENGINEERING"', {"Engineering"}),
    ('displayName sw "e"', {"Engineering", "Empty"}),
    ('externalId eq "g-eng"', {"Engineering"}),
    (f'members.value eq "{BOB}"', {"Engineering", "Sales"}),
    (f'members.value eq "{BOB.upper()}"', {"Engineering", "Sales"}),
    ('members eq "0000000a-abcd-4ef0-8abc-def000000000"', {"Engineering"}),
    ('members[value eq "0000000A-ABCD-4EF0-8ABC-DEF000000000"]', {"Engineering"}),
    (f'members[value eq "{BOB}" and display eq "bob jones"]', {"Engineering", "Sales"}),
    ('members.display eq "alice smith"', {"Engineering"}),
    ('members.display eq "CAROL@globex.com"', {"Sales"}),
    ('members.value eq "0000000e-abcd-4ef0-8abc-def000000000"', set()),
    ("members pr", {"Engineering", "Sales"}),
    ("not (members pr)", {"Empty"}),
    ('members.type eq "User"', {"Engineering", "Sales"}),
    ('meta.lastModified gt "2026-01-05T00:00:00Z"', {"Sales"}),
    ('DisplayName eq "sales"', {"Sales"}),
]


@pytest.mark.parametrize(("text", "expected"), GROUP_CASES, ids=[c[0] for c in GROUP_CASES])
def test_group_filter_matches_exactly_the_expected_groups(db, people, text, expected):
    """Group filters, including members via EXISTS on the memberships table."""
    assert groups_matching(db, people, text) == expected


def test_unquoted_values_are_accepted_and_noted(db, people):
    """Entra sends `externalId eq abc` and bare GUIDs: accepted, noted for the dialect report."""
    notes: list[str] = []
    assert users_matching(db, people, "externalId eq ext-A1", notes) == {"alice"}
    assert users_matching(db, people, f"externalId eq {GUID}", notes) == {"dave"}
    assert users_matching(db, people, "employeeNumber eq 1001", notes) == {"alice"}
    assert notes == [notes_.UNQUOTED_FILTER_VALUE] * 3


def test_entra_probe_with_random_guid_matches_nothing(db, people):
    """The test-connection probe filters on a random GUID and gets an empty result."""
    notes: list[str] = []
    text = "userName eq 0e4b8f6a-3c1d-4c55-9a7d-1b2c3d4e5f60"
    assert users_matching(db, people, text, notes) == set()
    assert notes == [notes_.UNQUOTED_FILTER_VALUE]


def test_capitalised_attribute_names_are_accepted_and_noted(db, people):
    """UserName / DisplayName (RFC 7643 §2.1 case-insensitive names) work and are noted."""
    notes: list[str] = []
    assert users_matching(db, people, 'UserName eq "bob@acme.com"', notes) == {"bob"}
    assert users_matching(db, people, 'DisplayName eq "Bob Jones"', notes) == {"bob"}
    assert users_matching(db, people, 'Emails[Type eq "home"]', notes) == {"alice", "carol"}
    assert notes == [notes_.CAPITALISED_ATTRIBUTE] * 4
    notes.clear()
    assert users_matching(db, people, 'userName eq "bob@acme.com"', notes) == {"bob"}
    assert notes == []


def test_string_boolean_is_accepted_and_noted(db, people):
    """active eq "False" (a quoted boolean) works and is noted as a string boolean in a
    filter: Entra compares roles[primary eq "True"] so in both dialects, so it is not the
    legacy dialect's string value (STRING_BOOLEAN)."""
    notes: list[str] = []
    assert users_matching(db, people, 'active eq "False"', notes) == {"carol"}
    assert notes == [notes_.STRING_BOOLEAN_IN_FILTER]


@pytest.mark.parametrize(("text", "index"), [
    ('userName eq "alice@acme.com"', "uq_users_directory_username"),
    # The value is compared with the live manager's id (a correlated subquery, which hides
    # a deleted manager) and, redundantly, with manager_id: the index finds the reports.
    (f'manager.value eq "{BOB.upper()}"', "ix_users_manager_id"),
])
def test_equality_filters_use_their_index(db, people, text, index):
    """userName eq compiles to lower(user_name) = lower(?), manager.value eq to
    manager_id = ? as well, so an index applies."""
    base = User.directory_id == people.directory.id
    where = translate_filter(text, "User", dialect=db.dialect)
    stmt = select(User.id).where(base, where)
    with db.engine.connect() as conn:
        if db.dialect == "sqlite":
            compiled = stmt.compile(conn, compile_kwargs={"literal_binds": True})
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").fetchall()
            assert index in str(plan), plan
        else:
            # A handful of rows: any index of the directory is as cheap as the right one,
            # so the directory's is left out and sequential scans are off.
            conn.exec_driver_sql("SET enable_seqscan = off")
            compiled = select(User.id).where(where).compile(
                conn, compile_kwargs={"literal_binds": True})
            plan = conn.exec_driver_sql(f"EXPLAIN {compiled}").fetchall()
            assert index in str(plan), plan


INVALID = [
    ("", "empty"),
    ("   ", "empty"),
    ('userName eq "x', "quote"),
    ("userName", "operator"),
    ('userName regex "x"', "operator"),
    ('userName eq', "value"),
    ('userName eq "a" and', "attribute"),
    ('userName eq "a" userName eq "b"', "Unexpected"),
    ('(userName eq "a"', "')'"),
    ('userName eq "a")', "Unexpected"),
    ('not userName eq "a"', "operator"),
    ('nosuch eq "x"', "Unknown attribute"),
    ('name.nosuch eq "x"', "Unknown sub-attribute"),
    ('nosuch:User:userName eq "x"', "Unknown schema"),
    ('urn:nosuch:userName eq "x"', "urn:<namespace>:<name>"),
    ("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User pr",
     "is a schema, not an attribute"),
    ('password eq "secret"', "never returned"),
    ('name eq "x"', "complex"),
    ('addresses eq "x"', "sub-attributes"),
    ('emails[type eq "work"', "']'"),
    ('emails[value[type eq "x"]]', "Nested"),
    ('emails[nosuch eq "x"]', "Unknown sub-attribute"),
    ('emails[name.givenName eq "x"]', "sub-attribute names"),
    ('userName[value eq "x"]', "not complex"),
    ("active gt true", "boolean"),
    ('active eq "maybe"', "boolean"),
    ("active eq 1", "boolean"),
    ("userName eq true", "quote"),
    ('userName pr "x"', "Unexpected"),
    ("userName ge null", "null"),
    ('meta.created gt "yesterday"', "ISO 8601"),
    ("meta.created gt 5", "dateTime"),
    ('meta.created co "2026"', "does not apply"),
    ('meta.version eq "W/1"', "cannot be used"),
    ('groups.$ref eq "x"', "cannot be used"),
    ('urn:roster:params:scim:schemas:extension:access:2.0:User:organization eq "x"',
     "computed"),
    ('userName eq "a\\q"', "escape"),
    ('userName eq "a" & x', "Unexpected"),
    ('userName eq "a"' + " " * 200_000 + "x", "Unexpected"),
    ("(" * 60 + 'userName eq "a"' + ")" * 60, "deeper"),
    ('emails[type eq "work"].nosuch eq "x"', "Unknown sub-attribute"),
    # A valid ISO 8601 value that UTC moves past year 9999: said so, not "not ISO 8601".
    ('meta.created gt "9999-12-31T23:00:00-05:00"', "outside the years 1 to 9999"),
    ('meta.created gt "31/12/2026"', "ISO 8601"),
    # Not xsd:dateTime (RFC 7643 §2.3.5), though Python's fromisoformat reads them: a date
    # alone, a space for T, no seconds, basic or week forms, an empty fraction, a comma.
    ('meta.created gt "2020"', "ISO 8601"),
    ('meta.lastModified ge "not a date"', "ISO 8601"),
    ('meta.created gt "2026-13-45T00:00:00Z"', "ISO 8601"),
    ('meta.created gt "2026-02-30T00:00:00Z"', "ISO 8601"),
    ('meta.created gt "2026-01-02"', "ISO 8601"),
    ('meta.created gt "2026-01-02 12:00:00Z"', "ISO 8601"),
    ('meta.created gt "2026-01-02T12:00Z"', "ISO 8601"),
    ('meta.created gt "2026-01-02T12"', "ISO 8601"),
    ('meta.created gt "20260102T120000Z"', "ISO 8601"),
    ('meta.created gt "2026-W01-1"', "ISO 8601"),
    ('meta.created gt "2026-01-02T12:00:00.Z"', "ISO 8601"),
    ('meta.created gt "2026-01-02T12:00:00,5Z"', "ISO 8601"),
    ('meta.created gt "2026-01-02T12:00:00+15:00"', "ISO 8601"),
    ('meta.created gt "2026-01-02T12:00:00+0100"', "ISO 8601"),
    ('meta.created gt "2026-01-02T24:00:01Z"', "ISO 8601"),
    ('meta.created gt "2026-01-02t12:00:00z"', "ISO 8601"),
    ('meta.created gt "\u0662026-01-02T12:00:00Z"', "ISO 8601"),
    ('meta.created gt "9999-12-31T24:00:00Z"', "outside the years 1 to 9999"),
    ('meta.created ge "9999-12-31T23:59:59.9999999Z"', "outside the years 1 to 9999"),
    # Only the double quote quotes (RFC 7644 §3.4.2.2): these matched nobody, silently.
    ("userName eq 'ada@acme.example'", "not '"),
    ("userName eq \u201cada@acme.example\u201d", "not \u201c"),
    ("userName eq `ada`", "not `"),
    (" or ".join(['userName eq "a"'] * 101), "more than 100"),
    ('userName eq "a" or eq "b"', "operator"),
]


@pytest.mark.parametrize(("text", "fragment"), INVALID, ids=[c[0][:60] for c in INVALID])
def test_invalid_filters_are_400_invalid_filter(db, people, text, fragment):
    """Bad syntax, unknown attributes and wrong types give 400 invalidFilter with a reason."""
    with pytest.raises(ScimError) as caught:
        users_matching(db, people, text)
    assert (caught.value.status, caught.value.scim_type) == (400, "invalidFilter")
    assert fragment.lower() in caught.value.detail.lower()


def test_values_that_are_not_objects_never_break_a_filter(db, people):
    """Values that are not objects (invalid data) are skipped, never an SQL error."""
    with db.transaction() as s:
        dave = s.get(User, "0000000d-abcd-4ef0-8abc-def000000000")
        dave.emails = ["dave@acme.com", 5, None]
    assert users_matching(db, people, 'emails.value eq "alice@home.org"') == {"alice"}
    assert users_matching(db, people, "emails pr") == {"alice", "bob", "carol"}


def test_a_long_flat_filter_is_translated_without_recursion_trouble(db, people):
    """100 or-ed comparisons (the most allowed) run fine."""
    text = " or ".join([f'userName eq "user{i}@acme.com"' for i in range(99)]
                       + ['userName eq "bob@acme.com"'])
    assert users_matching(db, people, text) == {"bob"}


@pytest.mark.parametrize("text", ['members eq "x" and displayName pr', 'userName eq "x"',
                                  'emails.value eq "x"'])
def test_user_only_or_group_only_attributes_are_rejected_on_the_other_type(db, people, text):
    """Group filters know Group attributes only (userName, emails are User attributes)."""
    if text.startswith("members"):
        with pytest.raises(ScimError) as caught:
            users_matching(db, people, text)
    else:
        with pytest.raises(ScimError) as caught:
            groups_matching(db, people, text)
    assert caught.value.scim_type == "invalidFilter"


def test_resolve_attribute_gives_canonical_names_for_any_case_and_urn():
    """resolve_attribute is case-insensitive and accepts the schema URN prefix."""
    assert resolve_attribute("NAME.GIVENNAME", "User").name == "name.givenName"
    assert resolve_attribute(f"{ENT}:Manager.value", "User").name == "manager.value"
    assert resolve_attribute("members", "Group").attr.multi_valued
    with pytest.raises(ScimError) as caught:
        resolve_attribute("nosuch", "Group", scim_type="invalidValue")
    assert caught.value.scim_type == "invalidValue"


PREPARED_CASES = [
    # What IdPs send before creating: one attribute, eq, a plain quoted string.
    ("User", 'userName eq "alice@acme.com"'),
    ("User", 'userName eq "ALICE@ACME.COM"'),
    ("User", 'USERNAME eq "bob@acme.com"'),
    ("User", 'externalId eq "ext-A1"'),
    ("User", 'externalId eq "EXT-A1"'),  # caseExact: no match
    ("User", f'externalId eq "{GUID}"'),
    ("User", 'emails.value eq "ALICE@HOME.ORG"'),
    ("User", 'emails eq "carol@acme.com"'),
    ("User", 'name.givenName eq "Alice"'),
    ("User", f'manager.value eq "{BOB.upper()}"'),
    ("User", f'manager eq "{BOB}"'),
    ("User", 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "R&D"'),
    ("User", 'id eq "0000000a-abcd-4ef0-8abc-def000000000"'),
    ("User", 'id eq "0000000e-abcd-4ef0-8abc-def000000000"'),  # deleted: never listed
    ("User", 'userName eq ""'),
    ("User", 'title eq "Manager"'),
    ("Group", 'displayName eq "ENGINEERING"'),
    ("Group", 'externalId eq "g-eng"'),
    ("Group", f'members.value eq "{BOB.upper()}"'),
    ("Group", 'DisplayName eq "sales"'),
]


def _listed(db, tenant, resource: str, text: str) -> tuple[list[str], list[str], int]:
    params = parse_list_params({"filter": text}, from_body=False, default_count=100,
                               max_count=100, resource=resource)  # type: ignore[arg-type]
    notes: list[str] = []
    model = User if resource == "User" else Group
    with db.transaction(readonly=True) as s:
        page = run_list(s, model, tenant.directory.id, params, resource=resource,  # type: ignore[arg-type]
                        dialect=db.dialect, max_results=100, notes=notes)
    return [r.id for r in page.resources], sorted(notes), page.total_results


@pytest.mark.parametrize(("resource", "text"), PREPARED_CASES, ids=[c[1] for c in PREPARED_CASES])
def test_prepared_lookups_answer_exactly_as_the_full_translation(db, people, resource, text):
    """``attr eq "value"`` runs on statements built once per path (app.scim.filters.
    prepared_filter); wrapped in parentheses the same filter takes the full translation.
    Both give the same rows, totals and dialect notes, and only this tenant's rows."""
    split = split_eq_string(text)
    assert split is not None
    assert prepared_filter(split[0], resource, db.dialect) is not None
    assert split_eq_string(f"({text})") is None
    fast = _listed(db, people, resource, text)
    full = _listed(db, people, resource, f"({text})")
    assert fast == full
    expected = (users_matching(db, people, f"({text})") if resource == "User"
                else groups_matching(db, people, f"({text})"))
    assert len(fast[0]) == len(expected)


def test_prepared_lookups_are_per_tenant(db, people, other_tenant):
    """The statement is shared, the directory is bound per request: each tenant finds only
    its own alice@acme.com."""
    mine, _, _ = _listed(db, people, "User", 'userName eq "alice@acme.com"')
    theirs, _, _ = _listed(db, other_tenant, "User", 'userName eq "alice@acme.com"')
    assert len(mine) == len(theirs) == 1
    assert mine != theirs


@pytest.mark.parametrize("text", [
    'meta.created eq "2026-01-03T12:00:00Z"',  # dateTime: parsed per value
    'active eq "true"',  # string boolean: noted per value
    'displayName eq "Bob \\u004aones"',  # an escape: parsed fully
])
def test_other_eq_filters_take_the_full_translation_with_the_same_answer(db, people, text):
    """Filters outside the prepared shape still answer, through the full translation."""
    split = split_eq_string(text)
    assert split is None or prepared_filter(split[0], "User", db.dialect) is None
    assert _listed(db, people, "User", text) == _listed(db, people, "User", f"({text})")
