"""Property-based bad input on the SCIM endpoints: no answer is a 500, every answer is
``application/scim+json`` and every error is a SCIM Error (RFC 7644 §3.12).

Bodies start from a valid resource and have attributes replaced by arbitrary JSON (wrong
types, nesting, huge numbers, odd Unicode), PATCH operations mix known and unknown ops,
paths and values, and filters, ``sortBy``, ``attributes`` and paging parameters are
spliced from grammar pieces and noise. ``SCIM_FUZZ_EXAMPLES`` raises the examples per test
(default 100; the examples are derived from a fixed seed, so every run sends the same ones).
"""

from __future__ import annotations

import itertools
import json
import os
import re
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.scim.support import (
    CORE_GROUP,
    CORE_USER,
    ENTERPRISE,
    ERROR,
    PATCH_OP,
    SCIM,
    Scim,
    group_body,
    user_body,
)

EXAMPLES = int(os.environ.get("SCIM_FUZZ_EXAMPLES", "100"))
# SCIM_FUZZ_RANDOM=1 explores new examples on each run (to hunt, not for CI).
FUZZ = settings(max_examples=EXAMPLES, derandomize="SCIM_FUZZ_RANDOM" not in os.environ,
                deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])

USER_NAMES = ["userName", "USERNAME", "externalId", "name", "name.givenName", "displayName",
              "nickName", "profileUrl", "title", "userType", "preferredLanguage", "locale",
              "timezone", "active", "password", "emails", "phoneNumbers", "ims", "photos",
              "addresses", "groups", "entitlements", "roles", "x509Certificates", "id",
              "meta", "schemas", ENTERPRISE, f"{ENTERPRISE}:manager",
              f"{ENTERPRISE}:department", f"{CORE_USER}:userName", "unknownThing",
              "urn:ietf:params:scim:schemas:extension:roster:2.0:User", ""]
GROUP_NAMES = ["displayName", "members", "externalId", "id", "meta", "schemas", "unknown", ""]
PATHS = ["userName", "name.givenName", "name", "emails", 'emails[type eq "work"].value',
         'emails[type eq "work"]', "emails[value co \"@\"].primary", "active", "displayName",
         "members", 'members[value eq "x"]', "members[value eq 1]", f"{ENTERPRISE}:department",
         f"{ENTERPRISE}:manager", f"{ENTERPRISE}:manager.value", "addresses[type eq \"work\"]"
         ".streetAddress", "phoneNumbers[type eq \"mobile\"].value", "id", "meta.created",
         "groups", "password", "externalId", "title", "emails[", "name..givenName", "[]",
         'emails[type eq "work"].value.x', "urn:bogus:attr", ""]
FILTER_PIECES = ['userName eq "a"', "userName pr", 'emails[type eq "work"]',
                 'emails[value co "@" and primary eq true]',
                 'meta.created gt "2020-01-01T00:00:00Z"',
                 'meta.lastModified le "not a date"', "active eq true", "active eq \"true\"",
                 f'{ENTERPRISE}:department sw "E"', 'displayName ew "s"',
                 'members[value eq "x"]', "externalId eq null", "title gt 5",
                 'name.givenName co "\\u00e9"', "unknown eq 1", "not (active eq false)",
                 "userName eq", "(", ")", " and ", " or ", "not", "[", "]", "\"", "eq", "pr",
                 "emails.value eq \"a@b\"", "id eq \"\"", "x509Certificates.value pr"]
_SERIAL = itertools.count()
LIST_KEYS = ["filter", "sortBy", "sortOrder", "startIndex", "count", "cursor", "attributes",
             "excludedAttributes"]


def _json() -> st.SearchStrategy[Any]:
    scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
               | st.sampled_from(["", " ", "true", "False", "\x00", "\ud7ff", "a" * 300,
                                  "2020-01-01T00:00:00Z", "urn:x"]))
    keys = st.sampled_from([*USER_NAMES, "value", "type", "primary", "display", "$ref"]) \
        | st.text(max_size=10)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(keys, inner, max_size=4), max_leaves=12)


def _mutated(base: dict[str, Any], names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    edits = st.lists(st.tuples(st.sampled_from(names), st.booleans(), _json()), max_size=5)

    def apply(changes: list[tuple[str, bool, Any]]) -> dict[str, Any]:
        body = json.loads(json.dumps(base))
        for key in ("userName", "displayName"):  # a fresh name: not a 409 after the first
            if key in body:
                body[key] = f"{next(_SERIAL)}-{body[key]}"
        for name, drop, value in changes:
            if drop:
                body.pop(name, None)
            else:
                body[name] = value
        return body
    return edits.map(apply)


def _operations() -> st.SearchStrategy[Any]:
    # Mostly well-formed operations, so that most examples get past the envelope checks.
    op = st.sampled_from(["add", "remove", "replace"] * 3 + ["Add", "Replace", "REMOVE",
                                                            "move", "", 5, None])
    path = st.sampled_from(PATHS) | st.text(max_size=20)
    plausible = st.sampled_from(["x", "", True, "False", [], {}, [{"value": "x"}],
                                 [{"value": "a@b.example", "type": "work"}], {"value": "x"},
                                 {"givenName": "G"}, {"displayName": "Renamed"}])
    operation = st.fixed_dictionaries({"op": op}, optional={"path": path,
                                                            "value": plausible | _json()})
    body = st.fixed_dictionaries({"schemas": st.just([PATCH_OP]) | _json(),
                                  "Operations": st.lists(operation | _json(), max_size=4)})
    return body | _json()


def _query() -> st.SearchStrategy[dict[str, str]]:
    filters = st.lists(st.sampled_from(FILTER_PIECES), min_size=1, max_size=4).map(" ".join)
    value = filters | st.sampled_from([
        *USER_NAMES, *GROUP_NAMES, *PATHS, "-1", "0", "1", "99999999999999999999",
        "ascending", "descending", "x", "userName,,emails.value", "meta.created"]) \
        | st.text(max_size=30)
    return st.dictionaries(st.sampled_from(LIST_KEYS), value, max_size=4)


@pytest.fixture
def scim(client, tenant) -> Scim:
    return Scim(client, tenant)


def _check(response: Any) -> None:
    """The properties every SCIM answer holds, whatever was sent."""
    assert response.status_code < 500, (response.status_code, response.get_data()[:500])
    if response.status_code in (204, 304):
        return
    assert response.mimetype == SCIM, response.headers
    body = response.get_json()
    if response.status_code >= 400:
        assert ERROR in body["schemas"], body
        assert body["status"] == str(response.status_code), body


def _made(scim: Scim, kind: str, name: str) -> str:
    """The id of the User (by userName) or Group (by displayName) ``name``, created on
    first use (the examples of a test share the tables)."""
    user = kind == "Users"
    created = scim.post(f"/{kind}", user_body(name) if user else group_body(name))
    if created.status_code == 201:
        return str(created.get_json()["id"])
    expression = f"{'userName' if user else 'displayName'} eq {json.dumps(name)}"
    found = scim.get(f"/{kind}?filter={quote(expression)}")
    return str(found.get_json()["Resources"][0]["id"])


@FUZZ
@given(body=_mutated(user_body("fuzz@acme.example"), USER_NAMES))
def test_user_create_and_replace(scim: Scim, body: dict[str, Any]) -> None:
    """POST and PUT /Users with mutated bodies, then DELETE what was made."""
    created = scim.post("/Users", body)
    _check(created)
    if created.status_code == 201:
        _check(scim.delete(f"/Users/{created.get_json()['id']}"))
    _check(scim.put(f"/Users/{_made(scim, 'Users', 'fuzz-target@acme.example')}", body))


@FUZZ
@given(patch=_operations())
def test_user_patch(scim: Scim, patch: Any) -> None:
    """PATCH /Users/{id} with arbitrary operations; the user still reads back."""
    user_id = _made(scim, "Users", "patched@acme.example")
    _check(scim.patch(f"/Users/{user_id}", patch))
    _check(scim.get(f"/Users/{user_id}"))


@FUZZ
@given(body=_mutated(group_body("Fuzzers"), GROUP_NAMES), patch=_operations())
def test_group_create_patch_and_replace(scim: Scim, body: dict[str, Any], patch: Any) -> None:
    """POST, PATCH and PUT /Groups."""
    created = scim.post("/Groups", body)
    _check(created)
    if created.status_code == 201:
        _check(scim.delete(f"/Groups/{created.get_json()['id']}"))
    group_id = _made(scim, "Groups", "Fuzz target")
    _check(scim.patch(f"/Groups/{group_id}", patch))
    _check(scim.put(f"/Groups/{group_id}", body))
    _check(scim.get(f"/Groups/{group_id}"))


@FUZZ
@given(query=_query(), resource=st.sampled_from(["/Users", "/Groups", ""]))
def test_list_and_search(scim: Scim, query: dict[str, str], resource: str) -> None:
    """GET lists and POST /.search with arbitrary parameters."""
    if resource:
        _check(scim.get(f"{resource}?{urlencode(query)}"))
    search: dict[str, Any] = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}
    for key, value in query.items():
        numeric = key in ("startIndex", "count") and re.fullmatch(r"-?[0-9]{1,29}", value)
        search[key] = int(value) if numeric else value
    _check(scim.post(f"{resource}/.search", search))


@FUZZ
@given(value=_json(), schema=st.sampled_from([CORE_USER, CORE_GROUP]))
def test_arbitrary_json_bodies(scim: Scim, value: Any, schema: str) -> None:
    """Any JSON document at all, on every writing endpoint."""
    path = "/Users" if schema == CORE_USER else "/Groups"
    _check(scim.post(path, value))
    _check(scim.post("/.search", value))
    _check(scim.post(f"{path}/.search", value))


def _bulk() -> st.SearchStrategy[Any]:
    ref = st.sampled_from(["bulkId:a", "bulkId:b", "bulkId:zz", "bulkId:"])

    def new_user(bulk_id: str) -> dict[str, Any]:
        body = {**user_body(), "userName": f"{next(_SERIAL)}-bulk@acme.example"}
        return {"method": "POST", "path": "/Users", "bulkId": bulk_id, "data": body}

    member_patch = st.builds(lambda r: {"schemas": [PATCH_OP], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": r}]}]}, ref)
    plausible = st.one_of(
        st.sampled_from(["a", "c"]).map(new_user),
        st.builds(lambda r: {"method": "POST", "path": "/Groups", "bulkId": "b",
                             "data": group_body(f"{next(_SERIAL)}-bulk", [r])}, ref),
        st.builds(lambda p, d: {"method": "PATCH", "path": p, "data": d},
                  st.sampled_from(["/Groups/bulkId:b", "/Users/bulkId:a"]),
                  member_patch | _operations()),
        st.builds(lambda d: {"method": "PUT", "path": "/Users/bulkId:a", "data": d},
                  _mutated(user_body("bulk-put@acme.example"), USER_NAMES)),
        st.sampled_from(["/Users/bulkId:a", "/Groups/bulkId:b", "/Users/nope"]).map(
            lambda p: {"method": "DELETE", "path": p}))
    noise = st.fixed_dictionaries(
        {"method": st.sampled_from(["POST", "PUT", "PATCH", "DELETE", "GET", "post", ""])},
        optional={"path": st.sampled_from(["/Users", "/Groups", "/Users/", "Users", "/Me",
                                           "/Users?x=1", ""]) | st.text(max_size=15),
                  "bulkId": st.sampled_from(["a", "b", "", "a/b", 7, None]),
                  "data": _json(), "version": st.sampled_from(['W/"1"', "x", 1])})
    operations = st.lists(plausible | plausible | noise | _json(), max_size=6)
    return st.fixed_dictionaries(
        {"schemas": st.just(["urn:ietf:params:scim:api:messages:2.0:BulkRequest"]),
         "Operations": operations},
        optional={"failOnErrors": st.integers(1, 3) | _json()}) | _json()


@FUZZ
@given(request=_bulk())
def test_bulk(scim: Scim, request: Any) -> None:
    """POST /Bulk with arbitrary operations, references and failOnErrors; each operation's
    status is an HTTP status under 500, and its error response a SCIM Error."""
    response = scim.post("/Bulk", request)
    _check(response)
    if response.status_code == 200:
        for result in response.get_json()["Operations"]:
            assert 200 <= int(result["status"]) < 500, result
            if int(result["status"]) >= 400:
                assert ERROR in result["response"]["schemas"], result
