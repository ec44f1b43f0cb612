"""Filters on attributes of extensions Roster does not know (RFC 7644 §3.4.2.2, §3.10), over
HTTP on the suite's database (SQLite, or PostgreSQL with ROSTER_TEST_PG_URL).

Entra ID sends ``<custom URN>:costCode eq "X1"`` when a custom attribute is the matching
attribute, Okta ``urn:okta:<app>:1.0:user:custom:<name> eq "..."``; both were
400 invalidFilter ("Unknown schema"), so provisioning failed for every user.
"""

from __future__ import annotations

import urllib.parse

import pytest

from app.models import User
from app.scim.filter_extensions import custom_path
from app.scim.filter_syntax import parse_path
from tests.scim.support import CORE_GROUP, ENTERPRISE, Scim, assert_error

ENTRA = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
OKTA = "urn:okta:acme_app:1.0:user:custom"
GROUP_EXT = "urn:ietf:params:scim:schemas:extension:Site:2.0:Group"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


@pytest.fixture
def scim(client, tenant):
    """A SCIM client for the acme tenant."""
    return Scim(client, tenant)


@pytest.fixture
def people(scim):
    """Four users; ``bob`` spells the Entra URN and its keys in lower case."""
    scim.create_user("ada@acme.example", **{
        ENTRA: {"costCode": "X1", "level": 5, "remote": True, "tags": ["Blue", "green"],
                "badge": {"id": "B-7", "floor": 2}, "desks": [{"id": "D1"}, {"id": "D2"}]},
        OKTA: {"employeeType": "Contractor"}})
    scim.create_user("bob@acme.example", **{
        ENTRA.lower(): {"costcode": "x1", "level": "5", "remote": False, "tags": [],
                        "badge": {}},
        OKTA: {"employeeType": None}})
    scim.create_user("cy@acme.example", **{
        ENTRA: {"costCode": "", "level": 12.5, "remote": "true", "tags": ["blue", 7],
                "badge": "B-7"},
        OKTA: {"employeeType": "ÖSTERREICH İΣ"}})
    scim.create_user("dee@acme.example")


def _names(response) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return sorted(r["userName"].split("@")[0] for r in response.get_json()["Resources"])


def _list(scim, text: str, resource: str = "Users", **params: str):
    query = urllib.parse.urlencode({"filter": text, **params}, quote_via=urllib.parse.quote)
    return scim.get(f"/{resource}?{query}")


@pytest.mark.parametrize(("text", "expected"), [
    # Entra's exact matching query, and Okta's.
    (f'{ENTRA}:costCode eq "X1"', ["ada", "bob"]),
    (f'{OKTA}:employeeType eq "contractor"', ["ada"]),
    # URN and attribute name in any case (RFC 7643 §2.1), strings caseExact=false.
    (f'{ENTRA.upper()}:COSTCODE eq "x1"', ["ada", "bob"]),
    (f'{ENTRA}:costCode ne "X1"', ["cy", "dee"]),
    (f'{ENTRA}:costCode pr', ["ada", "bob"]),
    (f'{ENTRA}:costCode sw "x"', ["ada", "bob"]),
    # cy's "" is unassigned (RFC 7643 §2.5), not stored (app/scim/opaque.py): no string.
    (f'{ENTRA}:costCode co ""', ["ada", "bob"]),
    (f'{ENTRA}:costCode ew "1"', ["ada", "bob"]),
    (f'{ENTRA}:costCode gt "w"', ["ada", "bob"]),
    (f'{ENTRA}:costCode eq null', ["cy", "dee"]),
    (f'{OKTA}:employeeType pr', ["ada", "cy"]),
    # Folded as userName is, on both databases: İ is i, a final capital sigma is small.
    (f'{OKTA}:employeeType eq "österreich i\u03c3"', ["cy"]),
    (f'{OKTA}:employeeType ew "I\u03c3"', ["cy"]),
    # Numbers as numbers; "5" (a string) is no number.
    (f'{ENTRA}:level gt 4', ["ada", "cy"]),
    (f'{ENTRA}:level eq 5', ["ada"]),
    (f'{ENTRA}:level eq 5.0', ["ada"]),
    (f'{ENTRA}:level ge 12.5', ["cy"]),
    (f'{ENTRA}:level lt 10', ["ada"]),
    (f'{ENTRA}:level le 5', ["ada"]),
    (f'{ENTRA}:level eq "5"', ["bob"]),
    (f'{ENTRA}:level ne 5', ["bob", "cy", "dee"]),
    # Booleans as booleans; the string "true" is no boolean.
    (f'{ENTRA}:remote eq true', ["ada"]),
    (f'{ENTRA}:remote eq false', ["bob"]),
    (f'{ENTRA}:remote ne true', ["bob", "cy", "dee"]),
    (f'{ENTRA}:remote eq "TRUE"', ["cy"]),
    (f'{ENTRA}:remote pr', ["ada", "bob", "cy"]),
    # Arrays: any element (as multi-valued attributes, RFC 7644 §3.4.2.2).
    (f'{ENTRA}:tags eq "blue"', ["ada", "cy"]),
    (f'{ENTRA}:tags sw "GR"', ["ada"]),
    (f'{ENTRA}:tags eq 7', ["cy"]),
    (f'{ENTRA}:tags pr', ["ada", "cy"]),
    (f'{ENTRA}:tags ne "blue"', ["bob", "dee"]),
    # Objects: compared through a sub-attribute; the object itself equals no string.
    (f'{ENTRA}:badge.id eq "b-7"', ["ada"]),
    (f'{ENTRA}:badge.ID pr', ["ada"]),
    (f'{ENTRA}:badge.floor ge 2', ["ada"]),
    (f'{ENTRA}:badge eq "B-7"', ["cy"]),
    (f'{ENTRA}:badge pr', ["ada", "cy"]),
    (f'{ENTRA}:desks.id eq "d2"', ["ada"]),
    (f'{ENTRA}:costCode.id pr', []),
    # Combined with core attributes.
    (f'userName sw "a" and {ENTRA}:level gt 1', ["ada"]),
    (f'{ENTRA}:costCode eq "X1" or userName eq "dee@acme.example"', ["ada", "bob", "dee"]),
    (f'not ({ENTRA}:costCode pr)', ["cy", "dee"]),
    (f'not ({ENTRA}:level gt 4) and {OKTA}:employeeType eq null', ["bob", "dee"]),
    # A block nobody has, or an attribute nobody has: no match, not an error.
    ('urn:example:params:scim:schemas:extension:Other:2.0:User:x eq "X1"', []),
    (f'{ENTRA}:nothing pr', []),
])
def test_filters_on_custom_extension_attributes(scim, people, text, expected):
    """Each operator on strings, numbers, booleans, arrays and objects of custom blocks."""
    assert _names(_list(scim, text)) == expected


def test_entra_and_okta_matching_queries_as_sent(scim):
    """Entra ID, a custom attribute as the matching attribute: it looks the user up
    (``+`` for spaces, lower-case percent escapes), creates it when nothing matches, then
    finds it; Okta sends ``%20`` and a page size."""
    entra = ("/Users?filter=urn%3aietf%3aparams%3ascim%3aschemas%3aextension%3a"
             "CustomExtensionName%3a2.0%3aUser%3acostCode+eq+%22X1%22")
    okta = ("/Users?filter=urn:okta:acme_app:1.0:user:custom:employeeType%20eq%20"
            "%22Contractor%22&startIndex=1&count=100")
    for query in (entra, okta):
        empty = scim.get(query)
        assert empty.status_code == 200, empty.get_json()
        assert empty.get_json()["totalResults"] == 0
    user = scim.create_user("ada@acme.example", **{ENTRA: {"costCode": "X1"},
                                                   OKTA: {"employeeType": "Contractor"}})
    for query in (entra, okta):
        found = scim.get(query).get_json()
        assert [r["id"] for r in found["Resources"]] == [user["id"]]


def test_cursor_and_index_pages_follow_a_custom_filter(scim, people):
    """Paging (RFC 9865 cursors, startIndex) walks exactly the users the filter matches."""
    text = f'{ENTRA}:level pr'
    seen, cursor = [], ""
    while cursor is not None:
        page = _list(scim, text, count="1", cursor=cursor)
        assert page.status_code == 200, page.get_json()
        body = page.get_json()
        seen += [r["userName"] for r in body["Resources"]]
        cursor = body.get("nextCursor")
    assert sorted(seen) == ["ada@acme.example", "bob@acme.example", "cy@acme.example"]
    second = _list(scim, text, count="1", startIndex="2").get_json()
    assert (second["totalResults"], second["itemsPerPage"]) == (3, 1)


def test_users_search_and_root_search_filter_the_same(scim, people):
    """POST /Users/.search and /.search take the same filter (RFC 7644 §3.4.3)."""
    scim.post("/Groups", {"schemas": [CORE_GROUP], "displayName": "Berlin",
                          GROUP_EXT: {"site": "BER"}})
    text = f'{ENTRA}:costCode eq "X1"'
    body = {"schemas": [SEARCH], "filter": text}
    assert _names(scim.post("/Users/.search", body)) == ["ada", "bob"]
    root = scim.post("/.search", body)
    assert root.status_code == 200, root.get_json()
    assert sorted(r.get("userName", "") for r in root.get_json()["Resources"]) == [
        "ada@acme.example", "bob@acme.example"]
    both = scim.post("/.search", {"schemas": [SEARCH],
                                  "filter": f'{text} or {GROUP_EXT}:site eq "ber"'})
    assert sorted(r.get("userName") or r["displayName"]
                  for r in both.get_json()["Resources"]) == [
        "Berlin", "ada@acme.example", "bob@acme.example"]


def test_group_filters_on_custom_extension_attributes(scim):
    """Groups keep unknown blocks too, and filter on them alike."""
    for name, site in (("Berlin", "BER"), ("Paris", "par"), ("Nowhere", None)):
        body = {"schemas": [CORE_GROUP], "displayName": name}
        if site:
            body[GROUP_EXT] = {"site": site, "floors": [1, 2]}
        assert scim.post("/Groups", body).status_code == 201
    found = _list(scim, f'{GROUP_EXT.lower()}:SITE eq "ber" or {GROUP_EXT}:site sw "P"',
                  "Groups")
    assert found.status_code == 200, found.get_json()
    assert sorted(g["displayName"] for g in found.get_json()["Resources"]) == [
        "Berlin", "Paris"]
    none = _list(scim, f'not ({GROUP_EXT}:floors gt 1)', "Groups")
    assert [g["displayName"] for g in none.get_json()["Resources"]] == ["Nowhere"]


@pytest.mark.parametrize(("text", "expected"), [
    (f'{ENTRA}:costCode eq "x"', [6]), (f'{ENTRA}:costCode gt 1', []),
    (f'{ENTRA}:costCode eq true', []), (f'{ENTRA}:costCode pr', [6, 8]),
    (f'{ENTRA}:costCode co "x"', [6]), (f'{ENTRA}:costCode.id lt 3', [6, 8]),
    (f'{ENTRA}:costCode ne null', [6, 8]), (f'{ENTRA}:costCode ne "x"', [0, 1, 2, 3, 4, 5, 7, 8]),
])
def test_stored_values_of_any_shape_never_break_a_filter(scim, db, text, expected):
    """Whatever JSON a row holds where a block or value is expected (a JSON null, an array,
    a string instead of an object, nested arrays), the filter answers: jsonb_each and
    jsonb_array_elements raise on PostgreSQL when given anything else, json_each on SQLite
    when given text that is no JSON."""
    shapes = [None, ["x"], "x", 3, {ENTRA: "x"}, {ENTRA: [1, {"costCode": "x"}]},
              {ENTRA: {"costCode": [[1], {"id": 1}, None, "x"]}}, {ENTRA: {"costCode": {}}},
              {ENTRA: {"costCode": [{"id": [2]}]}}]
    ids = [scim.create_user(f"u{i}@acme.example")["id"] for i in range(len(shapes))]
    with db.transaction() as s:
        for user_id, shape in zip(ids, shapes, strict=True):
            s.get(User, user_id).extension_data = shape
    # count=0: the rows whose extension_data is no object could not be rendered (nothing
    # Roster writes looks like that); the filter itself must still answer.
    response = _list(scim, text, count="0")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["totalResults"] == len(expected)
    shown = _list(scim, f'({text}) and userName sw "u" and not (userName eq "u0@acme.example" '
                        f'or userName eq "u1@acme.example" or userName eq "u2@acme.example" or '
                        f'userName eq "u3@acme.example")')
    assert shown.status_code == 200, shown.get_json()
    assert sorted(r["userName"] for r in shown.get_json()["Resources"]) == [
        f"u{i}@acme.example" for i in expected if i > 3]


@pytest.mark.parametrize(("text", "detail"), [
    ('urn:foo: eq "x"', "Expected an attribute name right after the schema URN 'urn:foo:'"),
    ('urn:foo:bar eq "x"', "urn:<namespace>:<name>"),
    (f'{ENTRA} pr', "is an extension schema, not an attribute"),
    (f'{ENTRA}:level gt true', "compare with eq, ne and pr only"),
    (f'{ENTRA}:costCode co 5', "needs a quoted string"),
    (f'{ENTRA}:level gt 1e999', "finite"),
    (f'{ENTRA}:tags[value eq "x"]', "custom extension"),
])
def test_malformed_custom_paths_stay_400_invalid_filter(scim, people, text, detail):
    """A path that cannot name a custom attribute, or an operator its literal does not
    take, is 400 invalidFilter saying why (never a 500, on either database)."""
    body = assert_error(_list(scim, text), 400, "invalidFilter")
    assert detail in body["detail"], body


def test_sort_by_a_custom_attribute_is_a_precise_400(scim, people):
    """sortBy on a custom attribute is refused, saying so (RFC 7644 §3.4.2.3 allows it)."""
    body = assert_error(scim.get(f"/Users?sortBy={ENTRA}:costCode"), 400, "invalidValue")
    assert "custom extension" in body["detail"], body


def test_attributes_and_excluded_attributes_name_custom_attributes(scim, people):
    """With a custom filter, ``attributes=<urn>:<attr>`` (any case) returns that attribute
    of each block as stored, and ``excludedAttributes=<urn>`` drops the block."""
    query = urllib.parse.quote(f'{ENTRA}:costCode eq "X1"')
    only = scim.get(f"/Users?filter={query}&attributes={ENTRA.upper()}:COSTCODE,"
                    f"{OKTA}:employeeType")
    assert only.status_code == 200, only.get_json()
    assert [{k: v for k, v in r.items() if k.startswith("urn:")}
            for r in sorted(only.get_json()["Resources"], key=lambda r: r["userName"])] == [
        {ENTRA: {"costCode": "X1"}, OKTA: {"employeeType": "Contractor"}},
        {ENTRA.lower(): {"costcode": "x1"}}]
    dropped = scim.get(f"/Users?filter={query}&excludedAttributes={ENTRA}").get_json()
    assert [sorted(k for k in r if k.startswith("urn:"))
            for r in sorted(dropped["Resources"], key=lambda r: r["userName"])] == [
        [ENTERPRISE, OKTA], [ENTERPRISE]]


@pytest.mark.parametrize(("text", "expected"), [
    (f"{ENTRA}:costCode", (ENTRA, "costCode", None)),
    (f"{OKTA}:employeeType", (OKTA, "employeeType", None)),
    (f"{ENTRA}:badge.id", (ENTRA, "badge", "id")),
    ("urn:a:b:c", ("urn:a:b", "c", None)),
])
def test_custom_paths_split_at_the_last_colon(text, expected):
    """RFC 7644 §3.10: the attribute is what follows the last colon, whatever the URN's
    segments look like (Okta's ``1.0`` and ``custom``)."""
    path = custom_path(parse_path(text), "User")
    assert path is not None
    assert (path.urn, path.attr, path.sub) == expected


@pytest.mark.parametrize("text", [
    "costCode", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
    "urn:ietf:params:scim:schemas:core:2.0:User:userName",
    "urn:ietf:params:scim:schemas:core:2.0:Group:displayName",
])
def test_known_and_core_paths_are_not_custom(text):
    """Paths into the schemas Roster knows keep their own translation."""
    assert custom_path(parse_path(text), "User") is None
