"""Response bodies as JSON (app/json_output.py): the same document as json.dumps gives."""

from __future__ import annotations

import json

import pytest

from app.json_output import dumps

BODIES = [
    {"userName": "bjensen", "active": True, "emails": [], "meta": {"version": 'W/"3"'}},
    {"displayName": "Åsa Ünal 名前", "nested": [[1, 2.5, -0.0, None], {"a": {"b": "\n\t"}}]},
    {"big": 123456789012345678901234567890, "small": -(2**70)},  # beyond orjson's 64 bits
    {1: "an integer key"},  # orjson takes string keys only
    ["\x00 control \x1f", 1e308, 5e-324],
]


@pytest.mark.parametrize("body", BODIES)
def test_the_same_json_as_the_standard_library(body):
    """Decoded, each body is exactly what json.dumps wrote."""
    raw = dumps(body)
    assert isinstance(raw, bytes)
    assert json.loads(raw) == json.loads(json.dumps(body))


def test_compact():
    """No spaces between items or after keys."""
    assert dumps({"a": [1, 2], "b": None}) == b'{"a":[1,2],"b":null}'


def test_big_integers_are_kept_exactly():
    """orjson refuses them; the fallback writes every digit (not a float)."""
    assert dumps({"n": 2**70}) == b'{"n":1180591620717411303424}'


def test_non_ascii_is_written_as_utf8():
    """UTF-8 rather than escapes (the same JSON), except on the fallback path."""
    assert dumps({"name": "Ünal"}) == '{"name":"Ünal"}'.encode()
    fallback = dumps({"name": "Ünal", "n": 2**70})
    assert fallback == b'{"name":"\\u00dcnal","n":1180591620717411303424}'

