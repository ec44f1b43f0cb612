"""The same filters on SQLite and on PostgreSQL select the same resources (RFC 7644 §3.4.2.2).

Filters are translated to SQL for each database (case folding, LIKE escaping, NULLs,
booleans, dates, JSON-held multi-valued attributes), so the two databases are each
other's oracle: one directory's users and groups are created through SCIM on both, then
generated filters (attributes, operators and values drawn from the data, in other cases
and with wildcard characters) must give the same userNames, sortBy the same order and
totalResults the same count, or the same SCIM error. It runs in the PostgreSQL pass of the
suite, which has both databases.
"""

from __future__ import annotations

import itertools
import json
import os
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import create_app
from app.migrate import upgrade
from tests.conftest import app_overrides, make_tenant
from tests.scim.support import ENTERPRISE, Scim, group_body, user_body

EXAMPLES = int(os.environ.get("SCIM_FUZZ_EXAMPLES", "150"))
DIFF = settings(max_examples=EXAMPLES, derandomize="SCIM_FUZZ_RANDOM" not in os.environ,
                deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

NAMES = ["amy@acme.example", "AMY.2@Acme.Example", "bob_x@acme.example", "bob%y@acme.example",
         "Émile@acme.example", "émile.b@acme.example", "zoë@acme.example", "ZED@acme.example",
         "o'neil@acme.example", "İpek@acme.example", "ipek.2@acme.example",
         "ΟΔΥΣΣΕΑΣ@acme.example", "οδυσσεας.2@acme.example", 'quote"d@acme.example',
         "back\\slash@acme.example",
         "ß@acme.example", "SS@acme.example", "ǅenan@acme.example",
         "space name@acme.example", "a", "A1", "a10", "a9"]
TITLES = [None, "", "Buyer", "buyer", "BUYER", "Senior Buyer", "Approver", "ÉLAN", "%", "_"]
DEPARTMENTS = [None, "Sales", "sales", "Finance", "Field Service", ""]
GROUPS = ["Buyers", "buyers-eu", "Approvers", "Émilie's team", "İstanbul", "100% remote",
          "under_score"]


def _users() -> list[dict[str, Any]]:
    users = []
    for i, name in enumerate(NAMES):
        extra: dict[str, Any] = {
            "externalId": f"00u{i:03d}" if i % 5 else f"EXT-{name.upper()}",
            "active": i % 4 != 0,
            "name": {"givenName": name.split("@")[0].title(), "familyName": f"F{i % 3}"},
            "emails": [{"value": name.lower() if "@" in name else f"{name}@x.example",
                        "type": "work", "primary": True}],
            ENTERPRISE: {"costCenter": f"CC-{i % 4}"},
        }
        if i % 3 == 0:
            extra["emails"].append({"value": f"home{i}@Mail.example", "type": "home"})
        if TITLES[i % len(TITLES)] is not None:
            extra["title"] = TITLES[i % len(TITLES)]
        if DEPARTMENTS[i % len(DEPARTMENTS)] is not None:
            extra[ENTERPRISE]["department"] = DEPARTMENTS[i % len(DEPARTMENTS)]
        if i % 7 == 3:
            extra["phoneNumbers"] = [{"value": f"+1 555 01{i:02d}", "type": "mobile"}]
        users.append(user_body(name, **extra))
    return users


def _load(scim: Scim) -> None:
    ids = []
    for body in _users():
        response = scim.post("/Users", body)
        assert response.status_code == 201, response.get_json()
        ids.append(response.get_json()["id"])
    for n, name in enumerate(GROUPS):
        assert scim.post("/Groups", group_body(name, ids[n::5])).status_code == 201


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[Scim, Scim]:
    """A SCIM client of the PostgreSQL app and one of a SQLite app, with the same data."""
    pg_url = os.environ.get("ROSTER_TEST_PG_URL")
    if not pg_url:
        pytest.skip("compares PostgreSQL with SQLite: runs in the suite's PostgreSQL pass")
    from tests.conftest import fresh_database_url

    clients = []
    for url in (fresh_database_url(tmp_path_factory, "differential"),
                f"sqlite:///{tmp_path_factory.mktemp('differential') / 'roster.db'}"):
        upgrade(url)
        app: Flask = create_app(app_overrides(url))
        scim = Scim(app.test_client(), make_tenant(app.extensions["roster.db"], "acme"))
        _load(scim)
        clients.append(scim)
    return clients[0], clients[1]


def _value() -> st.SearchStrategy[str]:
    pieces = [*NAMES, *(t for t in TITLES if t), *(d for d in DEPARTMENTS if d), "acme",
              "ACME", "@", ".example", "é", "É", "%", "_", "\\", "'", '"', "x", "", "Mail",
              "home", "work", "CC-1", "cc-1", "00u00", "EXT", "F1", "+1", *GROUPS, "istanbul"]
    chosen = st.sampled_from(pieces)
    return st.one_of(chosen, chosen.map(str.upper), chosen.map(str.lower),
                     chosen.map(lambda v: v[: max(1, len(v) // 2)]),
                     chosen.map(lambda v: v[len(v) // 2:]))


_SERIAL = itertools.count()
USER_STRINGS = ["userName", "title", "externalId", "name.givenName", "name.familyName",
                "emails.value", "emails.type", "phoneNumbers.value", "displayName",
                f"{ENTERPRISE}:department", f"{ENTERPRISE}:costCenter"]
OPERATORS = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"]


def _comparison() -> st.SearchStrategy[str]:
    string = st.builds(lambda a, o, v: f"{a} {o} {json.dumps(v)}",
                       st.sampled_from(USER_STRINGS), st.sampled_from(OPERATORS), _value())
    present = st.sampled_from(USER_STRINGS).map(lambda a: f"{a} pr")
    boolean = st.builds(lambda o, v: f"active {o} {v}", st.sampled_from(["eq", "ne"]),
                        st.sampled_from(["true", "false"]))
    dates = st.builds(lambda a, o, v: f'{a} {o} "{v}"',
                      st.sampled_from(["meta.created", "meta.lastModified"]),
                      st.sampled_from(["gt", "ge", "lt", "le"]),
                      st.sampled_from(["2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z",
                                       "2000-01-01T00:00:00.5+02:00"]))
    value_path = st.builds(
        lambda a, t, o, v: f'{a}[type eq "{t}" and value {o} {json.dumps(v)}]',
        st.sampled_from(["emails", "phoneNumbers"]), st.sampled_from(["work", "home",
                                                                       "mobile"]),
        st.sampled_from(OPERATORS), _value())
    groups = st.builds(lambda o, v: f"groups.display {o} {json.dumps(v)}",
                       st.sampled_from(OPERATORS), _value())
    return st.one_of(string, string, present, boolean, dates, value_path, groups)


def _filter() -> st.SearchStrategy[str]:
    return st.recursive(_comparison(), lambda inner: st.one_of(
        st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
        st.builds(lambda a, b: f"({a}) or ({b})", inner, inner),
        inner.map(lambda a: f"not ({a})")), max_leaves=3)


def _selected(scim: Scim, expression: str, kind: str = "Users") -> tuple[int, Any]:
    """totalResults and the sorted names the filter selects, or the error's scimType."""
    name = "userName" if kind == "Users" else "displayName"
    query = {"filter": expression, "count": "100", "attributes": name}
    response = scim.get(f"/{kind}?{urlencode(query)}")
    body = response.get_json()
    if response.status_code != 200:
        return response.status_code, body.get("scimType")
    return body["totalResults"], sorted(r[name] for r in body["Resources"])


@DIFF
@given(expression=_filter())
def test_filters_select_the_same_users(both: tuple[Scim, Scim], expression: str) -> None:
    """A filter selects the same users on both databases (or fails the same way)."""
    pg, lite = both
    assert _selected(pg, expression) == _selected(lite, expression), expression


def _sort_key(resource: dict[str, Any], sort_by: str) -> Any:
    """The value a resource sorts by (RFC 7644 §3.4.2.3: a multi-valued attribute sorts by
    its primary value, else its first), folded as caseExact=false values compare."""
    if sort_by.startswith(ENTERPRISE):
        value: Any = resource.get(ENTERPRISE, {}).get(sort_by.rsplit(":", 1)[1])
    else:
        top, _, sub = sort_by.partition(".")
        value = resource.get(top)
        if isinstance(value, list):
            value = next((v for v in value if v.get("primary")), value[0] if value else None)
            sub = sub or "value"
        if isinstance(value, dict):
            value = value.get(sub)
    return value.lower() if isinstance(value, str) else value


@DIFF
@given(sort_by=st.sampled_from([*USER_STRINGS, "emails", "active"]),
       order=st.sampled_from(["ascending", "descending"]), expression=_filter())
def test_sorting_orders_the_same_way(both: tuple[Scim, Scim], sort_by: str, order: str,
                                     expression: str) -> None:
    """sortBy gives the same order of values on both databases, and the same users. (Users
    whose values tie are in id order, and ids differ between the two loads.)"""
    answers = []
    for scim in both:
        query = {"filter": expression, "sortBy": sort_by, "sortOrder": order,
                 "count": "100", "attributes": f"userName,{sort_by}"}
        response = scim.get(f"/Users?{urlencode(query)}")
        body = response.get_json()
        if response.status_code != 200:
            answers.append((response.status_code, body.get("scimType")))
            continue
        resources = body["Resources"]
        answers.append((body["totalResults"], sorted(r["userName"] for r in resources),
                        [_sort_key(r, sort_by) for r in resources]))
    assert answers[0] == answers[1], (sort_by, order, expression)


_GROUP_FILTER = st.recursive(st.one_of(
    st.builds(lambda o, v: f"displayName {o} {json.dumps(v)}", st.sampled_from(OPERATORS),
              _value()),
    st.sampled_from(["members pr", "displayName pr", "externalId pr",
                     'meta.created gt "2000-01-01T00:00:00Z"'])),
    lambda inner: st.one_of(st.builds(lambda a, b: f"({a}) or ({b})", inner, inner),
                            inner.map(lambda a: f"not ({a})")), max_leaves=3)


@DIFF
@given(expression=_GROUP_FILTER)
def test_group_filters_select_the_same_groups(both: tuple[Scim, Scim], expression: str) -> None:
    """Group filters select the same groups on both databases."""
    pg, lite = both
    assert _selected(pg, expression, "Groups") == _selected(lite, expression, "Groups"), \
        expression


def _walk(scim: Scim, query: dict[str, str], size: int, by_cursor: bool) -> list[str]:
    """Every userName of the query, page by page (RFC 9865 cursors, or startIndex)."""
    names: list[str] = []
    cursor, start = "", 1
    for _ in range(60):
        page_query = {**query, "count": str(size), "attributes": "userName"}
        page_query.update({"cursor": cursor} if by_cursor else {"startIndex": str(start)})
        body = scim.get(f"/Users?{urlencode(page_query)}").get_json()
        names += [r["userName"] for r in body["Resources"]]
        if by_cursor:
            cursor = body.get("nextCursor")
            if not cursor:
                return names
        else:
            start += size
            if start > body["totalResults"]:
                return names
    raise AssertionError("paging did not end")


@DIFF
@given(expression=_filter(), sort_by=st.sampled_from(["", "userName", "title", "emails",
                                                      f"{ENTERPRISE}:department"]),
       order=st.sampled_from(["ascending", "descending"]), size=st.integers(1, 7),
       by_cursor=st.booleans())
def test_paging_lists_every_user_once_in_order(both: tuple[Scim, Scim], expression: str,
                                               sort_by: str, order: str, size: int,
                                               by_cursor: bool) -> None:
    """Walking the pages of a filtered, sorted list (by cursor, keyset pages that follow
    sortBy, or by startIndex) gives the one-page answer exactly: every user once, none
    skipped, in the same order (stable ties), on both databases."""
    query = {"filter": expression}
    if sort_by:
        query.update(sortBy=sort_by, sortOrder=order)
    for scim in both:
        whole = scim.get(f"/Users?{urlencode({**query, 'count': '100'})}")
        if whole.status_code != 200:
            continue
        expected = [r["userName"] for r in whole.get_json()["Resources"]]
        assert _walk(scim, query, size, by_cursor) == expected, (query, size, by_cursor)


_CUSTOM = "urn:ietf:params:scim:schemas:extension:acme:2.0:User"


def _decimal(value: Any) -> Any:
    """JSON numbers as their decimal values: PostgreSQL's jsonb keeps a number's value,
    not its notation (``1e+17`` reads back as ``100000000000000000``, RFC 8259 §6)."""
    if isinstance(value, dict):
        return {key: _decimal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decimal(item) for item in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Decimal(repr(value))
    return value


def _stored(scim: Scim, body: dict[str, Any]) -> Any:
    """What the database gives back of a created user: status, and the resource without
    its id and meta (or the error's scimType)."""
    response = scim.post("/Users", body)
    created = response.get_json()
    if response.status_code != 201:
        return response.status_code, created.get("scimType")
    read = scim.get(f"/Users/{created['id']}").get_json()
    for resource in (created, read):
        del resource["id"], resource["meta"]
    assert _decimal(created) == _decimal(read)
    return 201, _decimal(read)


@DIFF
@given(extension=st.dictionaries(st.text(min_size=1, max_size=8).filter(str.isidentifier),
                                 st.recursive(st.none() | st.booleans()
                                              | st.integers(-(2**70), 2**70)
                                              | st.floats(allow_nan=False,
                                                          allow_infinity=False)
                                              | st.text(max_size=12),
                                              lambda inner: st.lists(inner, max_size=3)
                                              | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
                                              max_leaves=8), max_size=4),
       title=st.text(max_size=30))
def test_resources_are_stored_and_read_back_the_same(both: tuple[Scim, Scim],
                                                     extension: dict[str, Any],
                                                     title: str) -> None:
    """A user with arbitrary extension data (Entra's custom attributes are kept as sent)
    and title is accepted or refused alike, and read back alike, on both databases."""
    answers = []
    for scim in both:
        body = user_body(f"{next(_SERIAL)}@acme.example", title=title, **{_CUSTOM: extension})
        answer = _stored(scim, body)
        if answer[0] == 201:
            answer[1].pop("userName")
            answer[1]["emails"] = None  # holds the userName
        answers.append(answer)
    assert answers[0] == answers[1]
