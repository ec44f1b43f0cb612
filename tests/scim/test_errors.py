"""Bad input gets precise SCIM errors, never a 500, never a partial write."""

from __future__ import annotations

import pytest

from tests.conftest import database_locked, rows
from tests.scim.support import CORE_USER, PATCH_OP, SCIM, Scim, assert_error, user_body


@pytest.fixture
def scim(client, tenant):
    """A SCIM client for the acme tenant."""
    return Scim(client, tenant)


def _raw(scim, method, path, data, content_type=SCIM):
    return scim.client.open("/scim/v2" + path, method=method, data=data,
                            headers={**scim.tenant.headers, "Content-Type": content_type})


@pytest.mark.parametrize("data", [b"{", b"not json", b"\xff\xfe", b"", b"[1, 2]", b'"x"'])
def test_malformed_json_is_400_invalid_syntax(scim, db, data):
    """Unparseable or non-object bodies: 400 invalidSyntax, nothing stored."""
    assert_error(_raw(scim, "POST", "/Users", data), 400, "invalidSyntax")
    assert rows(db, "SELECT count(*) FROM users")[0][0] == 0


def test_wrong_content_type_is_415(scim):
    """A body that is not JSON by its media type is 415 in SCIM format."""
    assert_error(_raw(scim, "POST", "/Users", b"userName=x", "text/plain"), 415)


def test_plain_application_json_is_accepted(scim):
    """application/json is accepted as well as application/scim+json (RFC 7644 §3.1)."""
    import json
    response = _raw(scim, "POST", "/Users", json.dumps(user_body()).encode(),
                    "application/json")
    assert response.status_code == 201


def test_body_over_the_limit_is_413(scim, app, db):
    """Bodies over app.max_body_bytes are 413 in SCIM format, nothing stored."""
    big = user_body(displayName="x" * (app.config["ROSTER"]["app"]["max_body_bytes"] + 10))
    assert_error(scim.post("/Users", big), 413)
    assert rows(db, "SELECT count(*) FROM users")[0][0] == 0


@pytest.mark.parametrize(("body", "scim_type"), [
    ({"schemas": [CORE_USER]}, "invalidValue"),  # userName missing
    ({"userName": "x"}, "invalidSyntax"),  # schemas missing
    ({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "userName": "x"},
     "invalidSyntax"),
    ({"schemas": [CORE_USER], "userName": 5}, "invalidValue"),
    ({"schemas": [CORE_USER], "userName": "x", "active": "maybe"}, "invalidValue"),
    ({"schemas": [CORE_USER], "userName": "x", "emails": "a@b"}, "invalidValue"),
    ({"schemas": [CORE_USER], "userName": "x", "favouriteColour": "red"}, "invalidValue"),
    ({"schemas": [CORE_USER], "userName": "x", "name": {"nickname": "n"}}, "invalidValue"),
])
def test_invalid_user_bodies_are_400(scim, db, body, scim_type):
    """Wrong types, unknown attributes, missing or wrong schemas: 400, nothing stored."""
    assert_error(scim.post("/Users", body), 400, scim_type)
    assert rows(db, "SELECT count(*) FROM users")[0][0] == 0


@pytest.mark.parametrize(("operations", "scim_type"), [
    ([{"op": "jump", "path": "displayName", "value": "x"}], "invalidSyntax"),
    ([{"op": "replace", "path": "nope", "value": "x"}], "invalidPath"),
    ([{"op": "replace", "path": "meta.created", "value": "x"}], "mutability"),
    ([{"op": "remove", "path": 'emails[type eq "home"]'}], "noTarget"),
])
def test_invalid_patches_are_400_with_scim_type(scim, db, operations, scim_type):
    """PATCH errors carry RFC 7644 Table 9 scimTypes and change nothing."""
    user = scim.create_user()
    response = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_OP],
                                                   "Operations": operations})
    assert_error(response, 400, scim_type)
    assert rows(db, "SELECT version FROM users")[0][0] == 1


def test_bad_filter_is_400_invalid_filter(scim):
    """A filter that does not parse is 400 invalidFilter."""
    assert_error(scim.get('/Users?filter=userName eq'), 400, "invalidFilter")


def test_missing_and_invalid_tokens_are_401(client):
    """401 with WWW-Authenticate: Bearer for a missing or an unknown token."""
    for headers in ({}, {"Authorization": "Bearer rst_nope"}, {"Authorization": "Basic x"}):
        response = client.get("/scim/v2/Users", headers=headers)
        assert_error(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_errors_do_not_leak_internals(scim):
    """Error details name the problem, not SQL, stack frames or file paths."""
    scim.create_user()
    body = scim.post("/Users", user_body()).get_json()
    assert "INSERT" not in body["detail"]
    assert "Traceback" not in body["detail"]
    assert ".py" not in body["detail"]


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/Users"), ("PUT", "/Users/x"), ("PATCH", "/Users/x"), ("POST", "/Groups"),
    ("PATCH", "/Groups/x"), ("POST", "/Users/.search"), ("POST", "/.search"),
])
def test_token_is_checked_before_the_body(client, method, path):
    """Without a token even a malformed body gets 401, not a hint about the body."""
    response = client.open("/scim/v2" + path, method=method, data=b"{",
                           headers={"Content-Type": SCIM})
    assert_error(response, 401)
    # A forged token with a body of the wrong types: still 401, and nothing written.
    response = client.open("/scim/v2" + path, method=method, data=b'{"userName": 5}',
                           headers={"Content-Type": SCIM, "Authorization": "Bearer rst_forged"})
    assert_error(response, 401)


def test_database_lock_timeout_is_a_503_with_retry_after(app, tenant, client, db):
    """A writer stuck behind a lock gets a retryable SCIM 503, never a 500 (SQLite and PG)."""
    with database_locked(app, db):
        response = client.post("/scim/v2/Users", headers=tenant.headers,
                               json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                     "userName": "locked@acme.com"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.get_json()["status"] == "503"
    assert response.mimetype == "application/scim+json"
