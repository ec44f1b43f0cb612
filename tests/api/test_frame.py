"""The frame: authentication, problem JSON, org scoping, validation, audit naming the key."""

from __future__ import annotations

import io

import pytest

from tests.conftest import rows

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "request_id"}


def assert_problem(response, status: int, slug: str) -> dict:
    """The response is RFC 9457 problem JSON with the given status and type."""
    assert response.status_code == status, response.data
    assert response.mimetype == "application/problem+json"
    body = response.get_json(force=True)
    assert set(body) >= PROBLEM_KEYS
    assert body["status"] == status
    assert body["type"] == f"https://roster.dev/problems/{slug}"
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def test_missing_key_is_401_with_a_bearer_challenge(client, keys):
    """No Authorization header: 401 problem JSON that says how to authenticate."""
    response = client.get("/api/v1/orgs")
    body = assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in body["detail"]


def test_a_refused_key_is_named_invalid_token_in_the_challenge(client, db, tenant):
    """RFC 6750 §3.1: a Bearer credential sent and refused (unknown, revoked, or a SCIM
    token) carries error="invalid_token"; no credential, or another scheme, carries none."""
    refused = ["rk_not-a-key", tenant.token]
    for credential in refused:
        response = client.get("/api/v1/orgs", headers={"Authorization": f"Bearer {credential}"})
        assert_problem(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"] == \
            'Bearer realm="roster-api", error="invalid_token"'
    for headers in ({}, {"Authorization": "Basic eDp5"}, {"Authorization": "Bearer "}):
        response = client.get("/api/v1/orgs", headers=headers)
        assert_problem(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="roster-api"'


def test_unknown_url_and_method_under_the_api_are_problems(client, keys):
    """Routing errors (404, 405) under /api/v1 are problem JSON too."""
    assert_problem(client.get("/api/v1/nothing-here"), 404, "not-found")
    response = client.delete("/api/v1/orgs", headers=keys["operator"].headers)
    assert_problem(response, 405, "method-not-allowed")
    assert "GET" in response.headers["Allow"]


def test_validation_errors_name_the_field(client, keys):
    """A bad body value answers 400 with an errors entry for that field."""
    response = client.post("/api/v1/orgs", json={"slug": "Not A Slug", "extra": 1},
                           headers=keys["operator"].headers)
    body = assert_problem(response, 400, "validation")
    assert {e["field"] for e in body["errors"]} == {"slug", "extra"}


def test_malformed_json_and_wrong_media_type_are_problems(client, keys):
    """Broken JSON is a 400, a non-JSON body a 415; neither writes anything."""
    headers = keys["operator"].headers
    response = client.post("/api/v1/orgs", data="{nope", headers=headers,
                           content_type="application/json")
    assert assert_problem(response, 400, "validation")["errors"][0]["field"] == "body"
    response = client.post("/api/v1/orgs", data="slug=x", headers=headers,
                           content_type="application/x-www-form-urlencoded")
    assert_problem(response, 415, "unsupported-media-type")
    assert client.post("/api/v1/orgs", json=[1], headers=headers).status_code == 400


def test_a_compressed_body_is_415_naming_the_encoding(db, client, keys):
    """A gzip body is refused by its encoding, not as broken JSON; identity is fine."""
    import gzip
    import json

    headers = keys["operator"].headers
    body = json.dumps({"slug": "zipped", "name": "Zipped"}).encode()
    response = client.post("/api/v1/orgs", data=gzip.compress(body),
                           content_type="application/json",
                           headers={**headers, "Content-Encoding": "gzip"})
    assert "'gzip' is not supported" in assert_problem(response, 415,
                                                      "unsupported-media-type")["detail"]
    assert rows(db, "SELECT count(*) AS n FROM organizations WHERE slug = 'zipped'")[0].n == 0
    response = client.post("/api/v1/orgs", data=body, content_type="application/json",
                           headers={**headers, "Content-Encoding": "Identity"})
    assert response.status_code == 201, response.get_json()


def test_too_large_body_is_413(app, client, keys):
    """A body over app.max_body_bytes answers 413 problem JSON."""
    limit = app.config["MAX_CONTENT_LENGTH"]
    response = client.post("/api/v1/orgs", data="x" * (limit + 1), headers=keys["operator"].headers,
                           content_type="application/json")
    assert_problem(response, 413, "payload-too-large")


def test_a_chunked_body_over_the_limit_is_413_not_cut_at_the_limit(app, client, keys, db):
    """Without Content-Length (chunked, as gunicorn hands it over) the body is held to the
    same limit; Werkzeug alone stopped at the limit and the cut body was parsed."""
    limit = app.config["MAX_CONTENT_LENGTH"]
    body = b'{"slug": "chunky", "name": "Chunky"}'
    response = client.post(
        "/api/v1/orgs", input_stream=io.BytesIO(body + b" " * (limit - len(body)) + b"junk"),
        environ_overrides={"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"},
        headers={**keys["operator"].headers, "Content-Type": "application/json"})
    assert_problem(response, 413, "payload-too-large")
    assert rows(db, "SELECT count(*) AS n FROM organizations WHERE slug = 'chunky'")[0].n == 0


def test_change_through_the_api_is_audited_with_the_key(db, client, keys):
    """Creating an organization writes an audit event whose actor is the API key."""
    response = client.post("/api/v1/orgs", json={"slug": "initech", "name": "Initech"},
                           headers={**keys["operator"].headers, "X-Request-ID": "req-42"})
    assert response.status_code == 201
    created = response.get_json()
    assert created["slug"] == "initech"
    events = rows(db, "SELECT actor_type, actor_id, request_id FROM audit_events "
                      "WHERE action = 'organization:create' AND subject_id = :id",
                  id=created["id"])
    assert [tuple(e) for e in events] == [("api_key", keys["operator"].id, "req-42")]


def test_org_bound_key_gets_404_for_another_organization(client, keys, other_tenant):
    """An admin of acme asking for globex gets the same 404 as for a missing org."""
    response = client.get(f"/api/v1/orgs/{other_tenant.org.id}", headers=keys["admin"].headers)
    other = assert_problem(response, 404, "not-found")
    missing = assert_problem(client.get("/api/v1/orgs/no-such-org",
                                        headers=keys["admin"].headers), 404, "not-found")
    assert other["detail"].replace(other_tenant.org.id, "X") == \
        missing["detail"].replace("no-such-org", "X")


def test_use_of_a_key_is_recorded(db, client, keys, tenant):
    """last_used_at is set by the first request with a key."""
    key = keys["auditor"]
    assert rows(db, "SELECT last_used_at FROM api_keys WHERE id = :id", id=key.id)[0][0] is None
    client.get(f"/api/v1/orgs/{tenant.org.slug}", headers=key.headers)
    assert rows(db, "SELECT last_used_at FROM api_keys WHERE id = :id",
                id=key.id)[0][0] is not None


def test_openapi_is_public_and_3_1(client):
    """GET /api/v1/openapi.json needs no key and describes every declared route."""
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    assert spec["openapi"] == "3.1.0"
    assert "/api/v1/orgs/{org_id}" in spec["paths"]


def test_unexpected_error_is_a_500_problem_without_traceback(fresh_url, caplog):
    """A database failure (a table missing from a database at the migration head) answers
    problem JSON 500 and logs the error. (An unmigrated database is a 503, tests/ops.)"""
    from app import create_app
    from app.migrate import upgrade
    from tests.conftest import app_overrides

    upgrade(fresh_url)
    app = create_app(app_overrides(fresh_url))
    with app.extensions["roster.db"].engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE api_keys")
    broken = app.test_client()
    response = broken.get("/api/v1/orgs", headers={"Authorization": "Bearer rk_whatever",
                                                   "X-Request-ID": "req-500"})
    body = assert_problem(response, 500, "internal")
    assert "req-500" in body["detail"]
    assert "no such table" not in response.get_data(as_text=True)
    logged = [r for r in caplog.records if r.getMessage() == "unhandled API error"]
    assert logged
    assert logged[0].exc_info
    assert logged[0].request_id == "req-500"


def test_nul_characters_are_a_400_naming_the_field(client, keys, tenant):
    """NUL in a path, query or body value is refused before the database sees it."""
    headers = keys["operator"].headers
    assert_problem(client.get("/api/v1/orgs/a%00b", headers=headers), 400, "validation")
    response = client.get("/api/v1/audit?action=a%00b", headers=headers)
    assert assert_problem(response, 400, "validation")["errors"][0]["field"] == "action"
    response = client.post("/api/v1/orgs", headers=headers, json={"slug": "abc", "name": "x\0"})
    assert assert_problem(response, 400, "validation")["errors"][0]["field"] == "name"
    response = client.post(f"/api/v1/orgs/{tenant.org.id}/roles", headers=headers,
                           json={"key": "k", "name": "n", "parameters": {"a\0": {}}})
    assert assert_problem(response, 400, "validation")["errors"][0]["field"] == "parameters.a\0"


def test_value_the_database_cannot_store_is_a_400(client, keys, tenant, db):
    """A unit path longer than its column (deep tree, long names) is a 400 naming the
    parent, on both databases (SQLite, which does not enforce VARCHAR lengths, kept it)."""
    url = f"/api/v1/orgs/{tenant.org.id}/units"
    parent = None
    for i in range(6):
        response = client.post(url, headers=keys["admin"].headers,
                               json={"name": f"{i}" * 190, "kind": "team", "parent": parent})
        if response.status_code != 201:
            break
        parent = response.get_json()["path"]
    body = assert_problem(response, 400, "validation")
    assert "unit path is longer than 1000 characters" in body["detail"]
    assert rows(db, "SELECT count(*) FROM units WHERE organization_id = :o",
                o=tenant.org.id)[0][0] == 5


@pytest.mark.parametrize(("data", "field"), [
    (b"[" * 100_000 + b"]" * 100_000, "body"),  # past the interpreter's recursion limit
    (b'{"slug": ' + b"[" * 40 + b"]" * 40 + b"}", "body"),  # past MAX_DEPTH only
    (b'{"slug": "a\\ud800"}', "slug"),  # an unpaired surrogate
    (b'{"slug": "\xed\xa0\x80"}', "body"),  # a surrogate encoded as UTF-8 bytes
    (b'{"name": "x\\u0000y"}', "name"),
])
def test_bodies_no_database_can_take_are_400_problems(client, keys, db, data, field):
    """Deep nesting, NUL and unpaired surrogates are 400 problems naming where, not a 500."""
    before = rows(db, "SELECT count(*) FROM organizations")[0][0]
    response = client.post("/api/v1/orgs", data=data, headers=keys["operator"].headers,
                           content_type="application/json")
    assert assert_problem(response, 400, "validation")["errors"][0]["field"] == field
    assert rows(db, "SELECT count(*) FROM organizations")[0][0] == before


def test_a_query_string_that_is_not_utf8_is_a_400(client, keys):
    """%FF is no UTF-8 (RFC 3986 §2.5): Werkzeug quoted it back to the text "%FF", so the
    query meant something else; it is a 400 naming the query."""
    response = client.get("/api/v1/orgs?limit=%ff", headers=keys["operator"].headers)
    problem = assert_problem(response, 400, "validation")
    assert problem["errors"] == [{"field": "query", "detail": "not UTF-8"}]


@pytest.mark.parametrize("segment", ["Caf%E9", "Caf%FF", "%C3"])
def test_a_path_that_is_not_utf8_is_a_400_and_names_nothing(db, client, keys, segment):
    """A path segment whose bytes are not UTF-8 (RFC 3986 §2.5; a client encoding "Café" as
    Latin-1) was decoded with U+FFFD in place of the bytes, so /directories/Caf%E9 and
    /directories/Caf%FF both found, and disabled, the directory named "Caf\ufffd"; a 400
    naming the path now, as for the query, and nothing is written."""
    headers = keys["admin"].headers
    created = client.post("/api/v1/orgs/acme/directories", headers=headers,
                          json={"vendor": "entra", "name": "Caf\ufffd"})
    assert created.status_code == 201, created.data
    for method, path in (("GET", f"/api/v1/orgs/acme/directories/{segment}"),
                         ("POST", f"/api/v1/orgs/acme/directories/{segment}/disable"),
                         ("GET", f"/api/v1/orgs/{segment}/units")):
        problem = assert_problem(client.open(path, method=method, headers=headers), 400,
                                 "validation")
        assert problem["errors"] == [{"field": "path", "detail": "not UTF-8"}]
    assert rows(db, "SELECT status FROM directories WHERE name = :n", n="Caf\ufffd") == \
        [("active",)]
    encoded = "/api/v1/orgs/acme/directories/Caf%EF%BF%BD"  # U+FFFD itself, as UTF-8
    assert client.get(encoded, headers=headers).status_code == 200


def test_a_body_or_query_a_route_does_not_take_is_a_400_and_changes_nothing(db, client, keys,
                                                                           tenant):
    """POST .../tokens with {"days": 7} issued a token of the default lifetime and
    /orgs/acme?fields=id answered the whole organization: what a route does not take was
    ignored, where an unknown field of a route with a schema is a 400 naming it."""
    headers = keys["admin"].headers
    tokens = "/api/v1/orgs/acme/directories/okta/tokens"
    response = client.post(tokens, json={"days": 7}, headers=headers)
    problem = assert_problem(response, 400, "validation")
    assert problem["errors"] == [{"field": "body", "detail": "no body expected"}]
    response = client.post(tokens, data="days=7", headers={
        **headers, "Content-Type": "application/x-www-form-urlencoded"})
    assert_problem(response, 400, "validation")
    assert rows(db, "SELECT count(*) FROM directory_tokens")[0][0] == 1
    response = client.get("/api/v1/orgs/acme?fields=id&expand=all", headers=headers)
    problem = assert_problem(response, 400, "validation")
    assert problem["errors"] == [{"field": "expand", "detail": "Unknown field."},
                                 {"field": "fields", "detail": "Unknown field."}]
    response = client.post(f"{tokens}?days=7", headers=headers)
    assert [e["field"] for e in assert_problem(response, 400, "validation")["errors"]] == [
        "days"]
    assert rows(db, "SELECT count(*) FROM directory_tokens")[0][0] == 1
    # No body, an empty one, or {} is no body.
    assert client.post(tokens, headers=headers).status_code == 201
    response = client.post(f"{tokens}/{tenant.directory.id}/revoke", json={}, headers=headers)
    assert response.status_code == 404  # the route ran: no such token
    spec = client.get("/api/v1/openapi.json").get_json()
    assert "400" in spec["paths"]["/api/v1/orgs/{org_id}"]["get"]["responses"]
    assert "413" in spec["paths"]["/api/v1/orgs/{org_id}/directories/{directory_id}/tokens"][
        "post"]["responses"]
