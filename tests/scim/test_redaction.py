"""Redaction of bodies kept by the flight recorder (pure, table-driven)."""

from __future__ import annotations

import json

import pytest

from app.scim.redaction import (
    MARK,
    redact_body,
    redact_filter,
    redact_own_json,
    redact_query,
    redact_value,
    sensitive_names,
)

SENSITIVE = sensitive_names(["employeeNumber", "x509Certificates"])
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


@pytest.mark.parametrize(("body", "expected"), [
    ({"userName": "a", "password": "hunter2"}, {"userName": "a", "password": MARK}),
    ({"Password": "x"}, {"Password": MARK}),
    ({ENTERPRISE: {"employeeNumber": "42", "department": "Ops"}},
     {ENTERPRISE: {"employeeNumber": MARK, "department": "Ops"}}),
    ({"Operations": [{"op": "replace", "path": "password", "value": "s3cret"}]},
     {"Operations": [{"op": "replace", "path": "password", "value": MARK}]}),
    ({"Operations": [{"op": "Replace", "path": f"{ENTERPRISE}:employeeNumber", "value": "7"}]},
     {"Operations": [{"op": "Replace", "path": f"{ENTERPRISE}:employeeNumber", "value": MARK}]}),
    ({"Operations": [{"op": "replace", "value": {f"{ENTERPRISE}:employeeNumber": "7",
                                                 "active": False}}]},
     {"Operations": [{"op": "replace", "value": {f"{ENTERPRISE}:employeeNumber": MARK,
                                                 "active": False}}]}),
    ({"Operations": [{"op": "replace", "path": "emails[type eq \"work\"].value",
                      "value": "a@b.c"}]},
     {"Operations": [{"op": "replace", "path": "emails[type eq \"work\"].value",
                      "value": "a@b.c"}]}),
    ({"access_token": "rsa_x", "client_secret": "y"},
     {"access_token": MARK, "client_secret": MARK}),
    # Filters of a .search body and PATCH paths compare values too (RFC 7644 §3.4.3, §3.5.2).
    ({"filter": 'employeeNumber eq "E-1" and userName eq "a"'},
     {"filter": f'employeeNumber eq "{MARK}" and userName eq "a"'}),
    ({"Operations": [{"op": "remove", "path": 'x509Certificates[value eq "MII"]'}]},
     {"Operations": [{"op": "remove", "path": f'x509Certificates[value eq "{MARK}"]'}]}),
])
def test_sensitive_values_are_masked_wherever_they_appear(body, expected):
    """Passwords, tokens and configured attributes are masked as keys, URN keys and PATCH paths."""
    out = redact_body(json.dumps(body).encode(), SENSITIVE, 10_000)
    assert json.loads(out) == expected


def test_non_json_bodies_are_masked_by_name():
    """A malformed body is kept as text for debugging, its password still masked."""
    out = redact_body(b'{"userName": "a", "password": "hunter2", ', SENSITIVE, 10_000)
    assert "hunter2" not in out
    assert '"userName": "a"' in out


def test_bodies_over_the_limit_keep_only_their_size():
    """A body past recorder.max_body_bytes is not stored, only its size."""
    assert redact_body(b"x" * 101, SENSITIVE, 100) == \
        "(101 bytes; larger than recorder.max_body_bytes, not kept)"
    assert redact_body(b"", SENSITIVE, 100) is None


def test_a_name_spelled_with_json_escapes_is_still_masked():
    """A key written as ``\\u0070assword`` decodes to password and is masked all the same."""
    raw = b'{"userName": "a", "\\u0070assword": "hunter2"}'
    out = redact_body(raw, SENSITIVE, 10_000)
    assert json.loads(out) == {"userName": "a", "password": MARK}
    assert "hunter2" not in out


def test_a_body_without_sensitive_names_is_kept_as_sent():
    """Bodies naming nothing sensitive are stored verbatim, without a decode and re-encode."""
    raw = b'{"userName": "a",  "emails": [{"value": "a@b.c"}]}'
    assert redact_body(raw, SENSITIVE, 10_000) == raw.decode()


# Responses as Roster serialises them (compact, ASCII-escaped), with every shape of value a
# sensitive key can hold, and strings that only look like keys.
OWN_BODIES = [
    {"schemas": ["x"], ENTERPRISE: {"employeeNumber": "E-1", "department": "Ops"}},
    {"Resources": [{ENTERPRISE: {"employeeNumber": str(i), "division": "d"}} for i in range(3)]},
    {"EmployeeNumber": 7, "a": {"employeeNumber": None}, "b": [{"employeenumber": True}]},
    {"employeeNumber": {"nested": {"password": "x", "employeeNumber": [1, {"y": "z"}]}},
     "after": "kept"},
    {f"{ENTERPRISE}:employeeNumber": "9", "name.employeeNumber": "8", "employeeNumber.x": "7"},
    {"detail": 'a "employeeNumber": "not a key" in a string', "employeeNumber": "E-2"},
    {"displayName": "Jos\u00e9 \"employeeNumber\":", "x\\": "employeeNumber"},
    {"name": "José Müller", "employeeNumber": "É-3", "token": "t"},
    {"employeeNumber": "E-4", "z": "employeeNumber", "emails": [{"value": "a@b.c"}]},
    {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "404"},
    {"a\\:employeeNumber": "E-1", "b\\.password": "p", "x.y:employeeNumber": {"k": "E-2"}},
    {"employeeNumberx": "keep", "xemployeeNumber": "keep", "employee": "keep"},
    {"v": "abc:employeeNumber", "w": "employeeNumber", "k": ["employeeNumber", 1]},
    # Sub-attributes of a sensitive attribute and names with spaces around them (PATCH
    # paths and path-less keys the engine reads), and look-alikes that are neither.
    {"x.employeeNumber.y": 1, "employeeNumber[x]": 2, " password": 3, "password ": 4,
     "employeeNumber .x": "keep", "employeeNumber.x:foo": "keep", ". password": "keep",
     "a[employeeNumber].b": "keep", "a[x.employeeNumber.y]": "keep", "urn:a: password": "k"},
]


@pytest.mark.parametrize("body", OWN_BODIES)
@pytest.mark.parametrize("indent", [None, 2])
def test_own_json_is_masked_exactly_like_the_full_walk(body, indent):
    """The text-level redaction of Roster's own responses keeps and masks the same values."""
    raw = json.dumps(body, indent=indent).encode()
    fast = redact_own_json(raw, SENSITIVE, 10_000)
    assert json.loads(fast) == json.loads(redact_body(raw, SENSITIVE, 10_000))
    for secret in ("E-1", "E-2", "E-4", "\\u00c9-3"):
        assert f'"{secret}"' not in fast


@pytest.mark.parametrize("body", [*OWN_BODIES, {"name": "İİİİ", "employeeNumber": "E-1"},
                                  {"a": "İ", "b": {"password": "E-2"}, "c": "\u0131"}])
@pytest.mark.parametrize(("indent", "ascii_only"), [(None, True), (2, False), (None, False)])
def test_own_json_in_utf8_is_masked_exactly_like_the_full_walk(body, indent, ascii_only):
    """Roster's responses are UTF-8 as well: a character that lower-cases longer ("İ") must
    not shift where a sensitive value is found."""
    raw = json.dumps(body, indent=indent, ensure_ascii=ascii_only).encode()
    fast = redact_own_json(raw, SENSITIVE, 10_000)
    assert json.loads(fast) == redact_value(body, SENSITIVE)
    for secret in ("E-1", "E-2", "E-4", "É-3"):
        assert f'"{secret}"' not in fast


CLIENT_BODIES = [
    *OWN_BODIES,
    {"schemas": ["x"], "userName": "a", "password": "p", ENTERPRISE: {"employeeNumber": "1"}},
    {"Operations": [{"op": "replace", "value": {"active": False, "password": "E-1"}}]},
    {"Operations": [{"op": "Replace", "PATH": "password", "value": "E-2"}]},
    {"Operations": [{"op": "replace", "path": "title", "value": "x"}], "password": "E-4"},
    {"filter": 'employeeNumber eq "E-1"', "startIndex": 1},
    {"name": "İlker", "employeeNumber": "E-1", "n": "\u0070assword"},
]


@pytest.mark.parametrize("body", CLIENT_BODIES)
@pytest.mark.parametrize(("indent", "ascii_only"), [(None, True), (2, False)])
def test_a_clients_json_is_masked_exactly_like_the_full_walk(body, indent, ascii_only):
    """A client's body is masked in its text where that reads the same (no ``\\u`` escape,
    no PATCH ``path``, no ``filter``), else by the walk: the same values either way."""
    raw = json.dumps(body, indent=indent, ensure_ascii=ascii_only).encode()
    out = redact_body(raw, SENSITIVE, 10_000)
    assert json.loads(out) == redact_value(body, SENSITIVE)
    for secret in ("E-1", "E-2", "E-4", "É-3"):
        assert f'"{secret}"' not in out


def test_a_clients_json_is_kept_as_sent_with_only_its_secrets_masked():
    """No decode and re-encode: spacing and characters stay as the client sent them."""
    raw = '{"userName": "José",   "password": "hunter2"}'.encode()
    assert redact_body(raw, SENSITIVE, 10_000) == f'{{"userName": "José",   "password": "{MARK}"}}'


def test_own_json_falls_back_when_it_is_not_json_after_all():
    """A body that breaks off after a sensitive key still never shows the value."""
    out = redact_own_json(b'{"x": 1, "employeeNumber": E-9}', SENSITIVE, 10_000)
    assert "E-9" not in out


def test_own_json_over_the_limit_keeps_only_its_size():
    """The size bound applies as for every other body."""
    assert redact_own_json(b'{"employeeNumber": "1"}', SENSITIVE, 5).startswith("(")


FILTERS = [
    ('employeeNumber eq "E-1"', f'employeeNumber eq "{MARK}"'),
    (f'{ENTERPRISE}:employeeNumber sw "E" or userName eq "a"',
     f'{ENTERPRISE}:employeeNumber sw "{MARK}" or userName eq "a"'),
    ('EMPLOYEENUMBER eq E-1', f'EMPLOYEENUMBER eq "{MARK}"'),  # Entra's unquoted words
    ('password eq "a\\"b" and title eq "t"', f'password eq "{MARK}" and title eq "t"'),
    ('employeeNumber eq "never closed', f'employeeNumber eq "{MARK}"'),
    ('x509Certificates[value eq "MII" and type eq "x"] or emails[value co "@x"]',
     f'x509Certificates[value eq "{MARK}" and type eq "{MARK}"] or emails[value co "@x"]'),
    ('userName eq "employeeNumber"', 'userName eq "employeeNumber"'),
    ("employeeNumber pr", "employeeNumber pr"),
    ('userName eq "a"', 'userName eq "a"'),
]


@pytest.mark.parametrize(("text", "expected"), FILTERS, ids=[f[0] for f in FILTERS])
def test_filter_values_of_sensitive_attributes_are_masked(text, expected):
    """A filter compares sensitive attributes with their values: those are masked, the rest
    kept (an Entra tenant matching on employeeId sent employee numbers in every lookup)."""
    assert redact_filter(text, SENSITIVE) == expected


def test_the_query_string_filter_is_masked_in_any_case():
    """Only the filter parameter is rewritten, and only when a sensitive name occurs."""
    raw = b"Filter=employeeNumber%20eq%20%22E-1%22&count=10"
    masked = "Filter=employeeNumber%20eq%20%22%5BREDACTED%5D%22&count=10"
    assert redact_query(raw, SENSITIVE) == masked
    kept = b"filter=userName+eq+%22a%22&startIndex=1"
    assert redact_query(kept, SENSITIVE) == kept.decode()


@pytest.mark.parametrize("raw", [
    b'{"userName": "a", "pass\\u0077ord": "LEAK16pw",',  # cut short: not JSON
    b'{"userName": "a", "\\u0070assword": "LE\\"AK16pw" ',  # an escaped quote in the value
    b'{"userName": "a", "password": "LEAK16pw',  # the value itself cut short
])
def test_a_malformed_body_keeps_no_password_however_it_is_spelled(raw):
    """The text fallback decodes the escapes that can spell a name before masking, and a
    value runs past escaped quotes; a NUL or quote escape stays an escape."""
    out = redact_body(raw, SENSITIVE, 10_000)
    assert "AK16pw" not in out, out
    assert '"userName": "a"' in out
    kept = redact_body(b'{"a": "x\\u0000\\u0022y", "b": ', SENSITIVE, 10_000)
    assert kept == '{"a": "x\\u0000\\u0022y", "b": '


def test_a_query_parameter_named_sensitively_is_masked():
    """SCIM reads no access_token from the query string, but a client may send one: its
    value is not kept (any case, percent-encoded names too); other parameters are."""
    raw = b"ACCESS_TOKEN=QSECRET1&count=1&acc%65ss_token=QSECRET2&filter=userName+eq+%22a%22"
    out = redact_query(raw, SENSITIVE)
    assert "QSECRET" not in out
    assert out == ("ACCESS_TOKEN=%5BREDACTED%5D&count=1&access_token=%5BREDACTED%5D"
                   "&filter=userName%20eq%20%22a%22")


def _query_reference(raw: bytes, sensitive: frozenset[str]) -> str:
    """redact_query as it was before the escape test: every query string decoded."""
    import urllib.parse

    from app.scim.query_string import query_pairs
    from app.scim.redaction import _is_sensitive, _plainly_clean
    from app.url_masks import SECRET_PARAMETER

    text = raw.decode("utf-8", errors="replace")
    pairs = query_pairs(text)
    credential = any(SECRET_PARAMETER.search(k) for k, _ in pairs)
    if not credential and _plainly_clean(urllib.parse.unquote_plus(text), sensitive):
        return text
    return urllib.parse.urlencode(
        [(k, MARK if SECRET_PARAMETER.search(k) or _is_sensitive(k, sensitive)
          else redact_filter(v, sensitive) if k.lower() == "filter" else v)
         for k, v in query_pairs(text)], quote_via=urllib.parse.quote)


@pytest.mark.parametrize("names", [SENSITIVE, sensitive_names(["x509Certificates", "cost-c"])])
def test_a_query_is_decoded_only_when_an_escape_could_spell_a_name(names):
    """A query string whose escapes decode to no character of a sensitive name (Okta's %20,
    %22 and %40) is checked undecoded; one escape of a name's letter, digit, ``_``, ``-`` or
    a backslash and it is decoded as before. Every combination gives what always decoding
    gave."""
    import itertools

    pieces = ["employeeNumber", "employee%4Eumber", "employee%6eumber", "%65mployeeNumber",
              "pass%77ord", "x%3509Certificates", "cost%2Dc", "access%5Ftoken", "%5Cu0070assword",
              "userName", "%20eq%20", "+eq+", "%22a%40b.c%22", "%22E-1%22", "%E2%82%AC", "%zz",
              "api%5Fkey", "si%67", "%2Bcode"]
    seen = 0
    for first, second in itertools.product(pieces, repeat=2):
        for raw in (f"filter={first}{second}", f"{first}={second}&count=1"):
            assert redact_query(raw.encode(), names) == _query_reference(raw.encode(), names), raw
            seen += 1
    assert seen == 2 * len(pieces) ** 2
