"""The deepest filter Roster accepts runs on both databases (RFC 7644 §3.4.2.2).

SQLite's SQL parser has a fixed stack (100 entries in the system libraries Roster runs on):
`not (a or not (b or ...))` 50 levels deep, which Roster used to accept, overflowed it at
about 15 levels ("parser stack overflow", a 500), while PostgreSQL answered. The nesting
limit is now one that every filter shape, leaf and list query fits on SQLite, and it is the
same on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.scim.filter_lexer import MAX_DEPTH
from tests.scim.support import Scim

# The leaves that cost the SQL parser most: a custom extension attribute (two nested json
# EXISTS), ne on a JSON list or a subquery, the computed meta.lastModified, a value filter.
USER_LEAVES = [
    'userName eq "a"',
    'emails.value ne "a"',
    'meta.lastModified gt "2020-01-01T00:00:00Z"',
    'manager.displayName ne "x"',
    'groups.display ne "x"',
    'urn:acme:ext:1.0:User:badge.id eq "x"',
    "urn:acme:ext:1.0:User:tags ne 5",
    'emails[type eq "work" and value co "x"].display pr',
]
GROUP_LEAVES = [
    'members.display ne "x"',
    'meta.lastModified gt "2020-01-01T00:00:00Z"',
    'urn:acme:ext:1.0:Group:badge.id ne "x"',
]


def _alternating(depth: int, leaf: str) -> str:
    """`not (leaf or not (leaf or ... leaf))`: the most SQL per level of parentheses."""
    return f"not ({leaf} or {_alternating(depth - 1, leaf)})" if depth else leaf


def _and_or(depth: int, leaf: str) -> str:
    """`(leaf or (leaf and (leaf or ...)))`."""
    if not depth:
        return leaf
    return f"({leaf} {'or' if depth % 2 else 'and'} {_and_or(depth - 1, leaf)})"


def _deepest(shape: Callable[[int, str], str], leaf: str) -> str:
    """``shape`` as deep as the limit allows with ``leaf`` (whose brackets count too)."""
    return shape(MAX_DEPTH - leaf.count("["), leaf)


def _in_brackets() -> str:
    """`emails[not (type ne "x" or not (...))]`: the nesting inside a value filter."""
    return "emails[" + _alternating(MAX_DEPTH - 1, 'type ne "x"') + "]"


def _queries(scim: Scim, resource: str, text: str) -> list[Any]:
    """The filter through every list query a client can send: a later index page, a cursor
    page sorted by a computed value, the type's .search, the root .search sorted."""
    path = f"/{resource}s"
    return [
        scim.get(path, query_string={"filter": text, "startIndex": "2",
                                     "sortBy": "meta.lastModified"}),
        scim.get(path, query_string={"filter": text, "cursor": "", "count": "1",
                                     "sortBy": "meta.lastModified"}),
        scim.post(f"{path}/.search", json={"filter": text, "sortOrder": "descending"}),
        scim.post("/.search", json={"filter": text, "sortBy": "meta.lastModified",
                                    "startIndex": 2}),
    ]


@pytest.fixture
def scim(client, tenant) -> Scim:
    """A SCIM client for a directory with two users in a group."""
    scim = Scim(client, tenant)
    ids = [scim.create_user(f"{n}@acme.example", title="Boss")["id"] for n in ("ada", "bob")]
    assert scim.post("/Groups", json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                      "displayName": "Eng",
                                      "members": [{"value": i} for i in ids]}).status_code == 201
    return scim


@pytest.mark.parametrize("leaf", USER_LEAVES)
@pytest.mark.parametrize("shape", [_alternating, _and_or], ids=["not-or", "and-or"])
def test_the_deepest_user_filter_runs_on_every_list_query(scim, shape, leaf):
    """A user filter nested to the limit answers 200 everywhere, never a 500."""
    text = _deepest(shape, leaf)
    for response in _queries(scim, "User", text):
        assert response.status_code == 200, (response.status_code, response.json)


def test_the_deepest_value_filter_runs_on_every_list_query(scim):
    """Nesting inside emails[...] (inside its EXISTS) to the limit answers 200 too."""
    for response in _queries(scim, "User", _in_brackets()):
        assert response.status_code == 200, (response.status_code, response.json)


@pytest.mark.parametrize("leaf", GROUP_LEAVES)
def test_the_deepest_group_filter_runs_on_every_list_query(scim, leaf):
    """A group filter nested to the limit answers 200 everywhere."""
    for response in _queries(scim, "Group", _deepest(_alternating, leaf)):
        assert response.status_code == 200, (response.status_code, response.json)


def test_one_level_more_is_400_invalid_filter(scim):
    """Past the limit: 400 invalidFilter saying so, on every database alike."""
    text = _alternating(MAX_DEPTH + 1, 'userName eq "a"')
    for response in _queries(scim, "User", text):
        assert response.status_code == 400
        assert response.json["scimType"] == "invalidFilter"
        assert f"deeper than {MAX_DEPTH} levels" in response.json["detail"]
