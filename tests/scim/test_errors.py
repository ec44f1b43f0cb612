"""Bad input gets precise SCIM errors, never a 500, never a partial write."""

from __future__ import annotations

import io
import json

import pytest

from tests.conftest import database_locked, rows
from tests.scim.support import (
    CORE_USER,
    ENTERPRISE,
    PATCH_OP,
    SCIM,
    Scim,
    assert_error,
    group_body,
    user_body,
)


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


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
def test_a_compressed_body_is_415_naming_the_encoding(scim, db, coding):
    """A body with a Content-Encoding Roster cannot read is 415 for that reason (not "not
    UTF-8"), nothing stored; ``identity`` is the body as sent (RFC 9110 §8.4)."""
    import gzip
    import json

    data = gzip.compress(json.dumps(user_body()).encode())
    response = scim.client.post("/scim/v2/Users", data=data, headers={
        **scim.tenant.headers, "Content-Type": SCIM, "Content-Encoding": coding})
    assert f"{coding!r} is not supported" in assert_error(response, 415)["detail"]
    assert rows(db, "SELECT count(*) FROM users")[0][0] == 0
    response = scim.client.post("/scim/v2/Users", data=json.dumps(user_body()), headers={
        **scim.tenant.headers, "Content-Type": SCIM, "Content-Encoding": "identity"})
    assert response.status_code == 201


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


def _streamed(scim, path: str, data: bytes):
    # As gunicorn hands over a chunked body: no Content-Length, the server ends the stream.
    return scim.client.open("/scim/v2" + path, method="POST", input_stream=io.BytesIO(data),
                            environ_overrides={"wsgi.input_terminated": True,
                                               "HTTP_TRANSFER_ENCODING": "chunked"},
                            headers={**scim.tenant.headers, "Content-Type": SCIM})


def test_a_chunked_body_over_the_limit_is_413_not_cut_at_the_limit(scim, app, db):
    """A body without Content-Length (chunked) is held to the same limit: Werkzeug stopped
    reading it at the limit without a word, so a valid object padded with spaces up to the
    limit and followed by anything was stored."""
    limit = app.config["ROSTER"]["app"]["max_body_bytes"]
    body = json.dumps(user_body()).encode()
    padded = body + b" " * (limit - len(body))
    assert_error(_streamed(scim, "/Users", padded + b"trailing garbage"), 413)
    assert rows(db, "SELECT count(*) FROM users")[0][0] == 0
    assert _streamed(scim, "/Users", padded).status_code == 201  # exactly the limit


@pytest.mark.parametrize("password", [{"x": "Secr3tPw"}, ["Secr3tPw"], 12345678])
def test_a_password_of_the_wrong_type_is_not_echoed_in_the_error(scim, db, password):
    """password is returned never (RFC 7643 §4.1.1): not in an error's detail either, where
    the flight recorder would keep it too."""
    response = scim.post("/Users", user_body(password=password))
    error = assert_error(response, 400, "invalidValue")
    assert "password" in error["detail"]
    assert "Secr3tPw" not in response.get_data(as_text=True)
    assert "12345678" not in response.get_data(as_text=True)
    assert rows(db, "SELECT count(*) FROM users")[0][0] == 0


def test_nan_and_infinity_are_400_invalid_syntax_and_nothing_is_stored(scim, db):
    """NaN, Infinity and 1e400 are not JSON (RFC 8259 §6): stored, they came back in every
    list page as NaN or Infinity, which no strict client can parse."""
    for value in (b"NaN", b"Infinity", b"-Infinity", b"1e400"):
        data = (b'{"schemas": ["' + CORE_USER.encode() + b'"], "userName": "n@acme.example", '
                b'"urn:example:ext:1.0:User": {"x": ' + value + b"}}")
        assert_error(_raw(scim, "POST", "/Users", data), 400, "invalidSyntax")
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
    for headers, challenge in (
            ({}, 'Bearer realm="roster-scim"'),
            # A refused token names its error (RFC 6750 §3.1); no token, no error code (§3).
            ({"Authorization": "Bearer rst_nope"},
             'Bearer realm="roster-scim", error="invalid_token"'),
            ({"Authorization": "Basic x"}, 'Bearer realm="roster-scim"')):
        response = client.get("/scim/v2/Users", headers=headers)
        assert_error(response, 401)
        assert response.headers["WWW-Authenticate"] == challenge


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


def test_database_lock_timeout_is_a_503_with_retry_after(app, tenant, client, db, caplog):
    """A writer stuck behind a lock gets a retryable SCIM 503, never a 500 (SQLite and PG);
    the log line says which error it was, not only its class."""
    with database_locked(app, db), caplog.at_level("WARNING", logger="app.scim.views"):
        response = client.post("/scim/v2/Users", headers=tenant.headers,
                               json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                     "userName": "locked@acme.com"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.get_json()["status"] == "503"
    assert response.mimetype == "application/scim+json"
    [line] = [r.getMessage() for r in caplog.records if "transient" in r.getMessage()]
    named = ("lock not available (SQLSTATE 55P03)" if db.dialect == "postgresql"
             else "OperationalError: database is locked")
    assert f"transient database error: {named}; " in line, line
    assert "statement: " in line


_USER = b'{"schemas": ["' + CORE_USER.encode() + b'"], '


@pytest.mark.parametrize(("data", "scim_type", "detail"), [
    # Past the interpreter's recursion limit (json.loads raises RecursionError) ...
    (b"[" * 100_000 + b"]" * 100_000, "invalidSyntax", "nests deeper than 32 levels"),
    # ... and deep enough only for the walks after it.
    (_USER + b'"userName": "x", "title": ' + b"[" * 40 + b"]" * 40 + b"}", "invalidSyntax",
     "nests deeper than 32 levels"),
    (_USER + b'"userName": "x", "externalId": ' + b"9" * 5000 + b"}", "invalidSyntax",
     "number too long"),
    (_USER + b'"userName": "a\\u0000b"}', "invalidValue", "userName contains a NUL"),
    (_USER + b'"userName": "x", "name": {"givenName": "\\u0000"}}', "invalidValue",
     "name.givenName contains a NUL"),
    (_USER + b'"userName": "x", "ti\\u0000tle": "t"}', "invalidValue", "contains a NUL"),
    (_USER + b'"userName": "x", "emails": [{"value": "a\\udc00@b"}]}', "invalidValue",
     "emails.0.value contains an unpaired UTF-16 surrogate"),
    (_USER + b'"userName": "\xed\xa0\x80"}', "invalidSyntax", "not valid UTF-8"),
    # RFC 8259 §4: Python kept the last of two equal names silently (a case variant was
    # already refused as "given twice").
    (_USER + b'"userName": "a@x.com", "userName": "b@x.com"}', "invalidSyntax",
     "gives the name 'userName' twice in one object"),
    (_USER + b'"userName": "x", "name": {"givenName": "A", "givenName": "B"}}',
     "invalidSyntax", "gives the name 'givenName' twice"),
])
def test_bodies_no_database_can_take_are_400(scim, db, data, scim_type, detail):
    """Nesting past 32 levels, NUL and unpaired surrogates: a precise 400 on SQLite and
    PostgreSQL alike (one would store them, the other fail), never a 500."""
    body = assert_error(_raw(scim, "POST", "/Users", data), 400, scim_type)
    assert detail in body["detail"]
    assert rows(db, "SELECT count(*) FROM users")[0][0] == 0


def test_a_byte_order_mark_is_ignored(scim):
    """RFC 8259 §8.1 lets a parser ignore a UTF-8 BOM; paired surrogates are text."""
    data = b"\xef\xbb\xbf" + _USER + b'"userName": "bom@x.test", "title": "\\ud83d\\ude00"}'
    response = _raw(scim, "POST", "/Users", data)
    assert response.status_code == 201, response.data
    assert response.get_json()["title"] == "\U0001F600"


def test_nul_in_patch_and_bulk_bodies_is_400(scim, db):
    """The same checks hold for PATCH and Bulk bodies: nothing changes."""
    user = scim.create_user()
    response = _raw(scim, "PATCH", f"/Users/{user['id']}", (
        b'{"schemas": ["' + PATCH_OP.encode() + b'"], "Operations": '
        b'[{"op": "replace", "path": "title", "value": "a\\u0000"}]}'))
    assert "Operations.0.value contains a NUL" in assert_error(response, 400,
                                                                "invalidValue")["detail"]
    response = _raw(scim, "POST", "/Bulk", (
        b'{"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": '
        b'[{"method": "POST", "path": "/Users", "bulkId": "b", "data": '
        b'{"schemas": ["' + CORE_USER.encode() + b'"], "userName": "\\ud800"}}]}'))
    assert_error(response, 400, "invalidValue")
    assert rows(db, "SELECT count(*), max(version) FROM users")[0] == (1, 1)


@pytest.mark.parametrize(("path", "attribute", "length"), [
    ("userName", "userName", 500),
    ("title", "title", 200),
    ("name.givenName", "name.givenName", 200),
    ("enterprise.department", f"{ENTERPRISE}:department", 200),
    ("emails", "emails.value", 500),
])
def test_strings_longer_than_their_column_are_400_on_every_database(scim, db, path,
                                                                     attribute, length):
    """PostgreSQL refuses a value longer than its column and SQLite keeps it: both answer
    400 invalidValue naming the attribute. A value of exactly the limit is stored."""
    def body(size: int, name: str) -> dict:
        value = "x" * size
        if path == "userName":
            return user_body(value)
        if path == "emails":
            return user_body(name, emails=[{"value": value[:-2] + "@x", "primary": True}])
        if path == "name.givenName":
            return user_body(name, name={"givenName": value})
        if path == "enterprise.department":
            return {**user_body(name), "schemas": [CORE_USER, ENTERPRISE],
                    ENTERPRISE: {"department": value}}
        return user_body(name, **{path: value})

    response = scim.post("/Users", body(length + 1, "long@x.test"))
    error = assert_error(response, 400, "invalidValue")
    assert f"Attribute '{attribute}' is longer than {length} characters" in error["detail"]
    assert rows(db, "SELECT count(*) FROM users")[0][0] == 0
    created = scim.post("/Users", body(length, "fits@x.test"))
    assert created.status_code == 201, created.data
    # PATCH and PUT pass the same check.
    user_id = created.get_json()["id"]
    if path == "title":
        response = scim.patch(f"/Users/{user_id}", {"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "title", "value": "y" * (length + 1)}]})
        assert_error(response, 400, "invalidValue")
        response = scim.put(f"/Users/{user_id}", body(length + 1, "fits@x.test"))
        assert_error(response, 400, "invalidValue")
        assert rows(db, "SELECT version FROM users")[0][0] == 1


def test_a_group_name_longer_than_its_column_is_400(scim, db):
    """Groups: displayName and externalId are bounded as well."""
    response = scim.post("/Groups", group_body("g" * 501))
    assert "Attribute 'displayName' is longer than 500" in assert_error(
        response, 400, "invalidValue")["detail"]
    assert scim.post("/Groups", group_body("g" * 500)).status_code == 201
    assert rows(db, "SELECT count(*) FROM groups")[0][0] == 1


@pytest.mark.parametrize("literal", ['"\\ud800"', '"a\\u0000"'])
def test_filter_strings_no_database_can_hold_are_invalid_filter(scim, literal):
    """An escaped NUL or unpaired surrogate in a filter is invalidFilter, in the URL and in
    POST /.search alike."""
    assert_error(scim.get("/Users", query_string={"filter": f"userName eq {literal}"}), 400,
                 "invalidFilter")
    response = scim.post("/Users/.search", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": f"title eq {literal}"})
    assert_error(response, 400, "invalidFilter")


@pytest.mark.parametrize(("path", "message"), [
    ("/Users/.search", {"filter": 'userName sw "a"', "FILTER": 'userName sw "b"'}),
    ("/.search", {"count": 1, "Count": 3}),
    ("/Groups/.search", {"SCHEMAS": ["x"]}),
])
def test_a_search_parameter_given_twice_in_any_case_is_400(scim, path, message):
    """RFC 7644 §3.4.3 names match in any case, so ``filter`` and ``FILTER`` are one name
    given twice: 400 invalidSyntax, where the last one used to win silently."""
    response = scim.post(path, {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], **message})
    assert "given twice" in assert_error(response, 400, "invalidSyntax")["detail"]


def test_a_patch_member_given_twice_in_any_case_is_400_and_changes_nothing(scim, db):
    """``path`` and ``PATH`` in one operation (or ``Operations`` twice) named two targets;
    the last one was patched silently."""
    user = scim.create_user()
    for message in (
            {"schemas": [PATCH_OP], "Operations": [
                {"op": "replace", "path": "title", "PATH": "nickName", "value": "x"}]},
            {"schemas": [PATCH_OP], "Operations": [
                {"op": "add", "OP": "remove", "path": "title", "value": "x"}]},
            {"schemas": [PATCH_OP], "Operations": [],
             "operations": [{"op": "replace", "path": "title", "value": "q"}]}):
        response = scim.patch(f"/Users/{user['id']}", message)
        assert "given twice" in assert_error(response, 400, "invalidSyntax")["detail"]
    assert rows(db, "SELECT title, nick_name, version FROM users") == [(None, None, 1)]


def test_an_id_with_nul_is_404_after_the_token(scim, client):
    """PostgreSQL cannot compare text holding NUL: such an id is simply not found."""
    assert_error(scim.get("/Users/a%00b"), 404)
    assert_error(scim.get("/Groups/a%00b"), 404)
    assert_error(client.get("/scim/v2/Users/a%00b"), 401)


def test_a_doubled_slash_is_a_scim_404_not_an_html_redirect(scim):
    """Werkzeug would answer /scim/v2//Users with an HTML 308; every /scim/v2 answer is
    SCIM JSON (RFC 7644 §3.12)."""
    assert_error(scim.client.get("/scim/v2//Users", headers=scim.tenant.headers), 404)


def test_a_value_the_database_refuses_is_400_invalid_value_not_500(scim, db, dialect):
    """A value Roster's own checks let through but the database refuses (here a column an
    operator narrowed on PostgreSQL) is 400 invalidValue with the database's reason, and
    nothing is written. SQLite enforces no column lengths, so it has no such refusal."""
    if dialect != "postgresql":
        pytest.skip("only PostgreSQL refuses a value by its column type")
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE users ALTER COLUMN title TYPE varchar(5)")
    events = rows(db, "SELECT count(*) FROM audit_events")[0][0]
    try:
        response = scim.post("/Users", user_body("narrow@acme.example", title="Engineer"))
        body = assert_error(response, 400, "invalidValue")
        assert "value too long" in body["detail"], body
        assert "Engineer" not in body["detail"]
        assert rows(db, "SELECT count(*) FROM users")[0][0] == 0
        assert rows(db, "SELECT count(*) FROM audit_events")[0][0] == events
    finally:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE users ALTER COLUMN title TYPE varchar(200)")


def test_a_query_string_that_is_not_utf8_is_a_400(client, tenant):
    """filter=userName eq "%ff%fe" matched a user literally named "%FF%FE" (Werkzeug quotes
    bytes it cannot decode back): not UTF-8 is a 400 (RFC 3986 §2.5)."""
    for query in ('filter=userName%20eq%20%22%ff%fe%22', "sortBy=%ed%a0%80"):
        response = client.get(f"/scim/v2/Users?{query}", headers=tenant.headers)
        assert "RFC 3986" in assert_error(response, 400, "invalidValue")["detail"]


def test_a_gzip_transfer_coding_is_a_501(client, tenant):
    """Transfer-Encoding gzip would reach Roster still compressed (RFC 9112 §6.1)."""
    response = client.post("/scim/v2/Users", data=b"{}", headers={
        **tenant.headers, "Content-Type": "application/scim+json",
        "Transfer-Encoding": "gzip, chunked"})
    assert "gzip" in assert_error(response, 501)["detail"]


@pytest.mark.parametrize(("query", "echoed"), [
    ("count=1e400", "count must be an integer, got '1e400'"),
    ("startIndex=-1e400", "startIndex must be an integer, got '-1e400'"),
    ("count=Infinity", "count must be an integer, got 'Infinity'"),
    ("count=" + "9" * 5000, "count must be an integer, got '" + "9" * 36 + "..."),
    ("startIndex=1" + "0" * 4500, "startIndex must be an integer, got '1" + "0" * 35 + "..."),
    ("sortOrder=" + "up" * 2000, "sortOrder must be 'ascending' or 'descending', got 'upup"),
])
def test_a_bad_numeric_or_sort_parameter_is_echoed_exactly_and_briefly(scim, query, echoed):
    """``count``, ``startIndex`` (RFC 7644 §3.4.2.4) and ``sortOrder`` that are not what
    they must be: 400 invalidValue, the value echoed as sent (escaped), at most 40
    characters of it (a 5,000-digit count came back whole in the detail)."""
    for path in ("/Users", "/Groups"):
        error = assert_error(scim.get(f"{path}?{query}"), 400, "invalidValue")
        assert error["detail"].startswith(echoed), error["detail"]
        assert len(error["detail"]) < 120


def test_every_scim_error_says_no_store(scim, client, app):
    """A SCIM error had no Cache-Control, though gunicorn's SCIM errors, the API's and OAuth's
    say no-store: a 404, 405 or 501 is heuristically cacheable (RFC 9111 §4.2.2), so a cache
    could keep an unknown path's 404 or an id's. Now every one says no-store."""
    user = scim.create_user()
    answers = [
        (client.get("/scim/v2/Nothing"), 404),  # no token: the path's own 404
        (client.get("/scim/v2/Users"), 401),
        (scim.get("/Users/nobody"), 404),
        (scim.request("TRACE", "/Users"), 405),
        (scim.get("/Me"), 501),
        (scim.get(f"/Users/{user['id']}", headers={"If-Match": 'W/"9"'}), 412),
        (scim.get("/Users?filter=userName%20zz%20%22a%22"), 400),
        (_raw(scim, "POST", "/Users", b"x" * (app.config["ROSTER"]["app"]["max_body_bytes"]
                                              + 1)), 413),
        (client.get("/scim/v2//Users", headers=scim.tenant.headers), 404),
    ]
    for response, status in answers:
        assert_error(response, status)
        assert response.headers.get("Cache-Control") == "no-store", (status, response.headers)
    assert "Cache-Control" not in scim.get(f"/Users/{user['id']}").headers
