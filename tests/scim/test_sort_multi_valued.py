"""sortBy on a multi-valued attribute orders by its primary value, else its first
(RFC 7644 §3.4.2.3): `phoneNumbers`, `roles.value`, `emails.type` ... were 400 invalidValue.
The same order on SQLite and PostgreSQL, by index and by cursor pages, and at the root."""

from __future__ import annotations

from typing import Any

import pytest

from tests.scim.support import CORE_USER, Scim

# userName -> phoneNumbers (and roles, with the same values). Sorted by phone: the primary
# wins over an earlier value, else the first counts; none (or an empty list) sorts last.
PHONES: dict[str, list[dict[str, Any]]] = {
    "ann@x.org": [{"value": "+1 555 0300", "type": "work"},
                  {"value": "+1 555 0100", "type": "home", "primary": True}],
    "ben@x.org": [{"value": "+1 555 0200", "type": "mobile"},
                  {"value": "+1 555 0000", "type": "work"}],
    "cat@x.org": [],
    "dan@x.org": [{"value": "+1 555 0400", "type": "Other"}],
    "eve@x.org": [{"value": "+1 555 0900", "type": "work"},
                  {"value": "+1 555 0050", "type": "work", "primary": True}],
}
BY_VALUE = ["eve", "ann", "ben", "dan", "cat"]
# caseExact=false, so folded: home, mobile, Other (before mobile byte-wise), work.
BY_TYPE = ["ann", "ben", "dan", "eve", "cat"]


@pytest.fixture
def scim(client, tenant) -> Scim:
    """Five users whose phone numbers and roles make every rule of the order count."""
    scim = Scim(client, tenant)
    for name, phones in PHONES.items():
        body = {"schemas": [CORE_USER], "userName": name}
        if phones:
            body |= {"phoneNumbers": phones, "roles": phones}
        assert scim.post("/Users", json=body).status_code == 201
    return scim


def _names(response: Any) -> list[str]:
    assert response.status_code == 200, response.get_json()
    return [r["userName"].split("@")[0] for r in response.get_json()["Resources"]]


def _walk(scim: Scim, query: dict[str, str]) -> list[str]:
    """Every page of a cursor walk of two users a page."""
    names: list[str] = []
    query = {**query, "cursor": "", "count": "2"}
    while True:
        page = scim.get("/Users", query_string=query)
        names += _names(page)
        if "nextCursor" not in page.get_json():
            return names
        query["cursor"] = page.get_json()["nextCursor"]


@pytest.mark.parametrize(("sort_by", "expected"), [
    ("phoneNumbers", BY_VALUE), ("phoneNumbers.value", BY_VALUE), ("PhoneNumbers", BY_VALUE),
    ("roles.value", BY_VALUE), ("phoneNumbers.type", BY_TYPE),
])
def test_multi_valued_sort_uses_the_primary_else_the_first_value(scim, sort_by, expected):
    """Ascending: missing values last; descending: first (RFC 7644 §3.4.2.3); index pages,
    cursor pages and the root search agree."""
    for order, want in (("ascending", expected), ("descending", expected[::-1])):
        query = {"sortBy": sort_by, "sortOrder": order}
        listed = _names(scim.get("/Users", query_string=query))
        assert listed == want
        paged = [n for start in ("1", "3", "5") for n in _names(scim.get(
            "/Users", query_string={**query, "startIndex": start, "count": "2"}))]
        assert paged == listed
        assert _walk(scim, query) == listed
        root = scim.post("/.search", json={"sortBy": sort_by, "sortOrder": order})
        assert _names(root) == listed


@pytest.mark.parametrize("sort_by", ["groups", "groups.display", "addresses", "name"])
def test_attributes_without_an_order_stay_invalid_value(scim, sort_by):
    """Memberships have no first value and addresses or name no value: 400 invalidValue."""
    response = scim.get("/Users", query_string={"sortBy": sort_by})
    assert response.status_code == 400
    assert response.get_json()["scimType"] == "invalidValue"
