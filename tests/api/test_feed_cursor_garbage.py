"""The feeds' cursors (events ``after``, audit and deprovisions ``cursor``) are opaque: any
other value, however long or malformed, is the documented 400 problem naming the parameter,
on both databases (never a 500 from an integer past bigint, a timestamp past the calendar,
a string longer than any column, or nesting deeper than a parser's stack)."""

from __future__ import annotations

import base64
import json

import pytest

from tests.api.test_frame import assert_problem


def _opaque(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


_GARBAGE = [
    "x" * 6000,
    "%00",
    "!!!!",
    _opaque(2**63),
    _opaque([2**63]),
    _opaque([10**40]),
    _opaque([1.5]),
    _opaque([True]),
    _opaque(["1"]),
    _opaque(["x" * 5000]),
    _opaque([None]),
    _opaque([]),
    _opaque([1, 2, 3, 4, 5]),
    _opaque([1, [2**62, 2**62, []], None]),
    _opaque([1, [0, 5, [7]], None]),
    _opaque([1, [0, 5, list(range(10_000))], None]),
    _opaque([1, 2**63]),
    _opaque({"list": "x", "after": [1]}),
    _opaque({"feed": "x", "at": [1]}),
    _opaque({"list": "x" * 5000, "after": [2**70]}),
    base64.urlsafe_b64encode(b"[" * 100_000).decode(),
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    _opaque(["0001-01-01T00:00:00+14:00"]),
]


@pytest.mark.parametrize(("url", "param", "reader"), [
    ("/api/v1/events", "after", "portal"),
    ("/api/v1/audit", "cursor", "auditor"),
    ("/api/v1/deprovisions", "cursor", "auditor"),
])
def test_a_malformed_or_huge_feed_cursor_is_a_400(client, keys, url, param, reader):
    """Each garbage cursor is a 400 ``validation`` problem naming the parameter, for the
    operator and for an organization's key alike."""
    for role in ("operator", reader):
        for cursor in _GARBAGE:
            response = client.get(url, query_string={param: cursor},
                                  headers=keys[role].headers)
            problem = assert_problem(response, 400, "validation")
            assert [e["field"] for e in problem["errors"]] == [param], (url, cursor[:40])
