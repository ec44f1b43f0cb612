"""The SCIM flight recorder: every request per directory, redacted, bounded by count and age."""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import time
from datetime import timedelta

import pytest
from sqlalchemy.engine import make_url

from app import create_app
from app.db import utcnow
from app.models.scim_ops import ScimRequest
from app.scim.dialect_report import count_notes, dialect_report
from app.scim.recorder import FLUSH_SECONDS, flush, list_requests
from tests.conftest import app_overrides, rows

SPC = "/scim/v2/ServiceProviderConfig"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def _recorded(db, app):
    flush(app)  # records are buffered and written in the background; write them now
    return rows(db, "SELECT * FROM scim_requests ORDER BY id")


@pytest.fixture
def recorder_app(database_url):
    """An app whose recorder keeps 3 requests per directory and prunes on every write."""
    built = create_app({**app_overrides(database_url),
                        "recorder": {"max_per_directory": 3, "prune_every": 1}})
    yield built
    built.extensions["roster.db"].dispose()


def test_a_request_is_recorded_with_its_response(client, db, tenant):
    """Method, path, query, status, duration and both bodies are kept for the directory."""
    response = client.get(f"{SPC}?x=1", headers={**tenant.headers, "User-Agent": "Okta SCIM"})
    assert response.status_code == 200
    [row] = _recorded(db, client.application)
    assert (row.directory_id, row.method, row.path, row.query, row.status) == \
        (tenant.directory.id, "GET", SPC, "x=1", 200)
    assert row.duration_ms > 0
    assert row.user_agent == "Okta SCIM"
    assert row.request_id == response.headers["X-Request-ID"]
    assert json.loads(row.response_body)["schemas"] == json.loads(response.data)["schemas"]


def test_the_bearer_token_is_never_stored(client, db, tenant):
    """Nothing of the Authorization header reaches the recorder's table."""
    client.get(SPC, headers=tenant.headers)
    assert tenant.token not in str([tuple(r) for r in _recorded(db, client.application)])


def test_unauthenticated_requests_belong_to_no_directory(client, db, tenant):
    """A request without a valid token is answered 401 and not recorded."""
    assert client.get(SPC, headers={"Authorization": "Bearer rst_nope"}).status_code == 401
    assert _recorded(db, client.application) == []


def test_a_request_answered_before_authentication_is_recorded_for_its_directory(
        client, db, tenant):
    """An unknown SCIM path is a 404 without authenticating; the recorder finds the
    directory from the token itself."""
    assert client.get("/scim/v2/Nope", headers=tenant.headers).status_code == 404
    [row] = _recorded(db, client.application)
    assert (row.directory_id, row.path, row.status) == (tenant.directory.id, "/scim/v2/Nope",
                                                        404)


def test_a_refused_token_is_looked_up_once(client, db, tenant):
    """The view's 401 is final: the recorder does not query the token a second time."""
    import sqlalchemy as sa

    lookups: list[str] = []

    def watch(_conn, _cursor, statement, *_args):
        if "directory_tokens" in statement:
            lookups.append(statement)

    engine = client.application.extensions["roster.db"].engine
    sa.event.listen(engine, "before_cursor_execute", watch)
    try:
        assert client.get(SPC, headers={"Authorization": "Bearer rst_nope"}).status_code == 401
        flush(client.application)
    finally:
        sa.event.remove(engine, "before_cursor_execute", watch)
    assert len(lookups) == 1, lookups
    assert _recorded(db, client.application) == []


def test_failed_request_is_recorded_with_redacted_body(client, db, tenant):
    """A rejected create is kept (status, error body) and its password is masked."""
    body = {"schemas": [USER], "password": "hunter2", "active": "maybe", "userName": 7}
    response = client.post("/scim/v2/Users", headers=tenant.headers, json=body)
    assert response.status_code == 400
    [row] = _recorded(db, client.application)
    assert row.status == 400
    assert "hunter2" not in row.request_body
    assert json.loads(row.request_body)["password"] == "[REDACTED]"
    assert json.loads(row.response_body)["status"] == "400"
    assert rows(db, "SELECT id FROM users") == []


def test_successful_create_is_recorded_with_password_redacted(client, db, tenant):
    """A 201 create is kept; password and the configured sensitive attribute are masked."""
    ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    body = {"schemas": [USER, ent], "userName": "rec@acme.com", "password": "S3cret!x",
            ent: {"employeeNumber": "E-1", "department": "Sales"}}
    assert client.post("/scim/v2/Users", headers=tenant.headers, json=body).status_code == 201
    [row] = _recorded(db, client.application)
    assert row.status == 201
    stored = json.loads(row.request_body)
    assert stored["password"] == "[REDACTED]"
    assert stored[ent] == {"employeeNumber": "[REDACTED]", "department": "Sales"}
    assert "E-1" not in row.response_body


def test_a_response_with_a_name_that_lengthens_when_lower_cased_is_recorded_masked(
        client, db, tenant):
    """"İ" lower-cases to two characters: found in the lower-cased text, a sensitive key's
    position was off in the response as sent, and its value was kept (Turkish names)."""
    ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    body = {"schemas": [USER, ent], "userName": "ilker@acme.com",
            "displayName": "İİİİİİİİ İlker Öztürk", ent: {"employeeNumber": "E-77"}}
    assert client.post("/scim/v2/Users", headers=tenant.headers, json=body).status_code == 201
    [row] = _recorded(db, client.application)
    assert "E-77" not in row.response_body
    assert "E-77" not in row.request_body
    assert json.loads(row.response_body)[ent]["employeeNumber"] == "[REDACTED]"


def test_a_patch_setting_the_password_is_recorded_masked_however_it_is_spelled(
        client, db, tenant):
    """Okta's password sync PATCHes ``password``. The engine reads PatchOp members in any
    case (``OP``, ``PATH``, ``VALUE``) and a path with whitespace around it, and so
    applied these, but the recorder looked for ``path`` in lower case only and compared
    it untrimmed: the new password was kept in clear in ``scim_requests``."""
    created = client.post("/scim/v2/Users", headers=tenant.headers,
                          json={"schemas": [USER], "userName": "sync@acme.com"})
    user_id = created.get_json()["id"]
    patch_op = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
    for number, operation in enumerate([
            {"OP": "replace", "PATH": "password", "VALUE": "Pw-upper-1"},
            {"op": "replace", "Path": "Password", "Value": "Pw-mixed-2"},
            {"op": "replace", "path": " password ", "value": "Pw-spaced-3"},
            {"op": "replace", "path": f"{USER}:password\t", "value": "Pw-urn-4"}]):
        body = {"schemas": [patch_op], "Operations": [operation]}
        if number == 0:
            body = {"schemas": [patch_op], "operations": [operation]}
        response = client.patch(f"/scim/v2/Users/{user_id}", headers=tenant.headers,
                                json=body)
        assert response.status_code == 200, (operation, response.get_json())
    recorded = _recorded(db, client.application)[1:]
    assert len(recorded) == 4
    for row in recorded:
        assert "Pw-" not in row.request_body, row.request_body
        [operation] = next(v for k, v in json.loads(row.request_body).items()
                           if k.lower() == "operations")
        assert next(v for k, v in operation.items() if k.lower() == "value") == "[REDACTED]"


def test_a_sensitive_complex_attribute_is_masked_through_its_sub_attributes(
        database_url, db, tenant):
    """With ``phoneNumbers`` configured sensitive, Entra's own PATCH shapes name it through
    a sub-attribute (Microsoft Learn, "Tutorial - Develop and plan provisioning for a SCIM
    endpoint": ``phoneNumbers[type eq "mobile"].value``; the compliant dialect as a
    path-less key), and a lookup may compare ``phoneNumbers.value`` or write a space before
    its bracket. Only the last name part was compared, ``value``, so the numbers were kept
    in clear in ``scim_requests``."""
    app = create_app({**app_overrides(database_url),
                      "recorder": {"sensitive_attributes": ["phoneNumbers"]}})
    try:
        client = app.test_client()
        created = client.post("/scim/v2/Users", headers=tenant.headers, json={
            "schemas": [USER], "userName": "phone@acme.com",
            "phoneNumbers": [{"type": "work", "value": "+1-555-0100"}]})
        assert created.status_code == 201
        user_id = created.get_json()["id"]
        patch_op = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
        for operation in (
                {"op": "Replace", "path": 'phoneNumbers[type eq "mobile"].value',
                 "value": "+1-555-0101"},
                {"op": "replace", "value": {'phoneNumbers[type eq "fax"].value': "+1-555-0102"}},
                {"op": "add", "path": "phoneNumbers.display", "value": "+1-555-0103"},
                {"op": "remove", "path": 'phoneNumbers[value eq "+1-555-0101"]'}):
            response = client.patch(f"/scim/v2/Users/{user_id}", headers=tenant.headers,
                                    json={"schemas": [patch_op], "Operations": [operation]})
            assert response.status_code == 200, (operation, response.get_json())
        # The second is refused (no space before "["), and is kept all the same.
        for expression, status in (('phoneNumbers.value eq "+1-555-0104"', 200),
                                   ('phoneNumbers [type eq "work" and value eq "+1-555-0105"]',
                                    400),
                                   ('phoneNumbers[type eq "work"].value eq "+1-555-0106"', 200)):
            found = client.get("/scim/v2/Users", query_string={"filter": expression},
                               headers=tenant.headers)
            assert found.status_code == status, (expression, found.get_json())
        recorded = _recorded(db, app)
        assert len(recorded) == 8
        for row in recorded:
            assert "+1-555" not in f"{row.query} {row.request_body}", (row.query,
                                                                       row.request_body)
        assert "[REDACTED]" in recorded[1].request_body
    finally:
        app.extensions["roster.db"].dispose()


def test_an_error_quoting_a_sensitive_value_is_recorded_masked(client, db, tenant):
    """A refused request is answered with what was wrong, quoting the value ("must be of
    type string, got ['E-77123']", "not ': 'E-77124'"), and the recorder kept that answer
    as sent: the employeeNumber (sensitive by default) masked in the request was in clear
    in the response beside it. It is masked there too; the rest of the detail stays."""
    ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    patch_op = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
    user_id = client.post("/scim/v2/Users", headers=tenant.headers, json={
        "schemas": [USER], "userName": "echo@acme.com"}).get_json()["id"]
    refused = [
        client.post("/scim/v2/Users", headers=tenant.headers, json={
            "schemas": [USER, ent], "userName": "e2@acme.com",
            ent: {"employeeNumber": ["E-77123"]}}),
        client.patch(f"/scim/v2/Users/{user_id}", headers=tenant.headers, json={
            "schemas": [patch_op], "Operations": [
                {"op": "replace", "path": f"{ent}:employeeNumber",
                 "value": {"number": "E-77125-and-a-long-tail-past-the-cut"}}]}),
        client.get("/scim/v2/Users", headers=tenant.headers,
                   query_string={"filter": "employeeNumber eq 'E-77124'"}),
        client.get("/scim/v2/Users", headers=tenant.headers,
                   query_string={"filter": 'employeeNumber eq "E-77126" and userName eq'}),
        # A raw "+" where spaces are %20 is a plus (Okta), and the error quotes it so.
        client.get("/scim/v2/Users?filter=employeeNumber%20eq%20'ab+E-77127'",
                   headers=tenant.headers),
    ]
    assert [r.status_code for r in refused] == [400, 400, 400, 400, 400]
    assert "ab+E-77127" in refused[4].get_json()["detail"]
    assert "E-77123" in refused[0].get_json()["detail"]  # the IdP itself is told
    recorded = _recorded(db, client.application)[1:]
    assert len(recorded) == 5
    for row in recorded:
        assert "E-7712" not in f"{row.query} {row.request_body} {row.response_body}", \
            row.response_body
    detail = json.loads(recorded[0].response_body)["detail"]
    assert detail.startswith(f"Attribute '{ent}:employeeNumber' must be of type string, got")
    assert "[REDACTED]" in detail


def test_sensitive_filter_values_are_not_recorded(client, db, tenant):
    """Lookups by a sensitive attribute keep the filter, not the value, in the query and in
    a .search body (README: sensitive attributes become [REDACTED])."""
    ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    query = f'{ent}:employeeNumber eq "EMPNO-778899"'
    assert client.get("/scim/v2/Users", query_string={"filter": query},
                      headers=tenant.headers).status_code == 200
    search = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
              "filter": query}
    assert client.post("/scim/v2/Users/.search", headers=tenant.headers,
                       json=search).status_code == 200
    recorded = _recorded(db, client.application)
    assert len(recorded) == 2
    for row in recorded:
        assert "EMPNO-778899" not in f"{row.query} {row.request_body}"
    assert "employeeNumber%20eq%20%22%5BREDACTED%5D%22" in recorded[0].query
    assert json.loads(recorded[1].request_body)["filter"].endswith('eq "[REDACTED]"')


def test_count_bound_keeps_the_newest(recorder_app, db, tenant):
    """With max_per_directory=3 only the three newest requests remain."""
    client = recorder_app.test_client()
    for i in range(6):
        client.get(f"{SPC}?n={i}", headers=tenant.headers)
    assert [r.query for r in _recorded(db, recorder_app)] == ["n=3", "n=4", "n=5"]


def test_count_bound_is_per_directory(recorder_app, db, tenant, other_tenant):
    """Pruning one directory never removes another directory's records."""
    client = recorder_app.test_client()
    client.get(SPC, headers=other_tenant.headers)
    for _ in range(5):
        client.get(SPC, headers=tenant.headers)
    kept = [r.directory_id for r in _recorded(db, recorder_app)]
    assert kept.count(other_tenant.directory.id) == 1
    assert kept.count(tenant.directory.id) == 3


def test_age_bound_drops_old_records(recorder_app, db, tenant):
    """Records older than max_age_days are pruned as new ones arrive."""
    with db.transaction() as session:
        session.add(ScimRequest(directory_id=tenant.directory.id,
                                created_at=utcnow() - timedelta(days=15), method="GET",
                                path="/old", query="", status=200, duration_ms=1.0, notes=[]))
    recorder_app.test_client().get(SPC, headers=tenant.headers)
    assert [r.path for r in _recorded(db, recorder_app)] == [SPC]


def test_disabled_recorder_keeps_nothing(database_url, db, tenant):
    """recorder.enabled=false stores no request."""
    built = create_app({**app_overrides(database_url), "recorder": {"enabled": False}})
    built.test_client().get(SPC, headers=tenant.headers)
    assert _recorded(db, built) == []
    built.extensions["roster.db"].dispose()


def test_listing_newest_first_and_failed_only(client, db, tenant):
    """list_requests orders newest first, honours the limit and the failed filter."""
    client.get(f"{SPC}?a", headers=tenant.headers)
    client.post("/scim/v2/Users", headers=tenant.headers, data="{not json",
                content_type="application/scim+json")
    client.get(f"{SPC}?b", headers=tenant.headers)
    flush(client.application)
    with db.transaction() as session:
        newest = list_requests(session, tenant.directory.id, limit=2)
        failed = list_requests(session, tenant.directory.id, failed=True)
    assert [r.query for r in newest] == ["b", ""]
    assert [r.status for r in failed] == [400]


def test_note_counters_upsert_per_request(db, tenant):
    """Each distinct note counts once per request, with first and last seen times; a batch
    of requests moves each counter by how many of them had the note, in one upsert."""
    now = utcnow()
    with db.transaction() as session:
        count_notes(session, [(tenant.directory.id, ["capitalised_op", "capitalised_op",
                                                     "string_boolean"], now)])
    with db.transaction() as session:
        count_notes(session, [(tenant.directory.id, ["capitalised_op"], now + timedelta(2)),
                              (tenant.directory.id, [], now + timedelta(3)),
                              (tenant.directory.id, ["capitalised_op"], now + timedelta(1))])
    with db.transaction() as session:
        report = dialect_report(session, tenant.directory.id)
    counts = {n["note"]: n["count"] for n in report["notes"]}
    assert counts == {"capitalised_op": 3, "string_boolean": 1}
    assert report["dialect"] == "entra-legacy"
    assert "aadOptscim062020" in report["summary"]
    capitalised = next(n for n in report["notes"] if n["note"] == "capitalised_op")
    assert capitalised["first_seen_at"] == now.isoformat()
    assert capitalised["last_seen_at"] == (now + timedelta(2)).isoformat()


def test_records_are_written_in_the_background(client, db, tenant):
    """Without flush(), the writer thread stores a request within a few intervals."""
    client.get(SPC, headers=tenant.headers)
    deadline = time.monotonic() + 50 * FLUSH_SECONDS
    while not rows(db, "SELECT id FROM scim_requests") and time.monotonic() < deadline:
        time.sleep(FLUSH_SECONDS / 4)
    assert len(rows(db, "SELECT id FROM scim_requests")) == 1


def test_a_chunked_request_body_is_recorded(client, db, tenant):
    """A body sent without Content-Length (chunked) is still kept, redacted; a GET has none."""
    body = json.dumps({"schemas": [USER], "userName": "chunk@acme.com", "password": "S3cret!x"})
    response = client.post("/scim/v2/Users", input_stream=io.BytesIO(body.encode()),
                           headers={**tenant.headers, "Transfer-Encoding": "chunked",
                                    "Content-Type": "application/scim+json"},
                           environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 201, response.get_json()
    assert client.get("/scim/v2/Users", headers=tenant.headers).status_code == 200
    created, listed = _recorded(db, client.application)
    assert json.loads(created.request_body)["userName"] == "chunk@acme.com"
    assert "S3cret" not in created.request_body
    assert listed.request_body is None


def test_a_path_with_nul_is_recorded(client, db, tenant):
    """A decoded %00 in the path would make PostgreSQL refuse the record (and log an error
    for it): NUL is kept as U+FFFD. A method no SCIM route takes is a SCIM 405 answered
    before the blueprint, so there is nothing of the directory's to record."""
    assert client.get("/scim/v2/Users/a%00b", headers=tenant.headers).status_code == 404
    response = client.open("/scim/v2/Users", method="PROPFIND", headers=tenant.headers)
    assert response.status_code == 405
    assert response.get_json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    recorded = _recorded(db, client.application)
    assert [(r.method, r.path, r.status) for r in recorded] == [
        ("GET", "/scim/v2/Users/a\ufffdb", 404)]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le"])
def test_a_utf16_or_utf32_body_is_recorded_redacted(client, db, tenant, encoding):
    """Roster refuses a body that is not UTF-8, but the record keeps it: read in its own
    encoding, so a password in it is found and masked (as UTF-8 it read "p\\0a\\0s\\0s...")."""
    body = json.dumps({"schemas": [USER], "userName": "u16@acme.com",
                       "password": "Hunter2-Secret"}).encode(encoding)
    response = client.post("/scim/v2/Users", data=body,
                           headers={**tenant.headers, "Content-Type": "application/scim+json"})
    assert response.status_code == 400
    [row] = _recorded(db, client.application)
    assert "Hunter2" not in row.request_body
    assert json.loads(row.request_body)["password"] == "[REDACTED]"
    assert "\x00" not in row.request_body


@pytest.mark.parametrize("body", [
    b'{"userName": "a\x00b"}',
    # UTF-8 that its first bytes make look like UTF-16 or UTF-32: read so, the password hid
    # in "CJK" text that encoded back to it.
    b'\x00{"userName": "x", "password": "Hunter2-Secret"}',
    b'x\x00{"password": "Hunter2-Secret"}',
    b'\xff\xfe{"password": "Hunter2-Secret"}\x00',
])
def test_a_body_with_nul_bytes_is_recorded_without_it(client, db, tenant, body):
    """A body with NUL bytes that is not UTF-16/32 JSON (refused with a 400) is recorded by
    its size only: PostgreSQL text cannot hold NUL (the record, with the rest of its batch,
    was lost there), and no reading of it may leave a password readable."""
    response = client.post("/scim/v2/Users", data=body,
                           headers={**tenant.headers, "Content-Type": "application/scim+json"})
    assert response.status_code == 400
    [row] = _recorded(db, client.application)
    assert row.request_body == f"({len(body)} bytes holding NUL bytes, not JSON; not kept)"


def _held_requests(app, headers, n, then=lambda: None):
    """Make ``n`` recorded requests, and run ``then``, while the writer thread is kept from
    flushing them."""
    client = app.test_client()
    client.get(SPC, headers=headers)
    flush(app)
    state = app.extensions["roster.recorder"]
    with state.write_lock:
        for i in range(n):
            client.get(f"{SPC}?n={i}", headers=headers)
        then()
    return state


def test_records_the_database_refuses_are_one_log_line(client, db, tenant, caplog):
    """A batch holding records the database refuses (their directory gone) stores the others,
    and one error line counts the refused ones: not a traceback per record."""
    app = client.application

    def orphan_every_other() -> None:
        state = app.extensions["roster.recorder"]
        with state.lock:
            for row in state.pending[::2]:
                row["directory_id"] = "no-such-directory"

    _held_requests(app, tenant.headers, 6, then=orphan_every_other)
    caplog.clear()
    flush(app)
    stored = [r.query for r in _recorded(db, app)]
    assert stored == ["", "n=1", "n=3", "n=5"]
    errors = [r for r in caplog.records if r.name == "app.scim.recorder"]
    assert [r.getMessage() for r in errors] == [
        "flight recorder could not store 3 of 6 SCIM requests"]
    assert errors[0].exc_info is not None


@pytest.mark.skipif(bool(os.environ.get("ROSTER_TEST_PG_URL")),
                    reason="holds SQLite's write lock from another connection")
def test_a_database_outage_drops_the_batch_with_one_warning(database_url, db, tenant, caplog):
    """The database busy (or away) fails every record alike: one warning counts the batch,
    no record is retried one by one (each would wait the busy timeout and log a traceback)."""
    overrides = app_overrides(database_url)
    overrides["database"] = {**overrides["database"], "sqlite_busy_timeout_ms": 50}
    app = create_app(overrides)
    logging.getLogger().addHandler(caplog.handler)  # create_app set up the root's handlers
    try:
        blocker = sqlite3.connect(make_url(database_url).database, isolation_level=None)
        state = _held_requests(app, tenant.headers, 5, then=lambda: blocker.execute(
            "BEGIN EXCLUSIVE"))
        caplog.clear()
        try:
            flush(app)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        lines = [r for r in caplog.records if r.name == "app.scim.recorder"]
        assert len(lines) == 1
        assert lines[0].levelname == "WARNING"
        assert lines[0].getMessage().startswith(
            "flight recorder dropped 5 SCIM requests (database unavailable: ")
        assert "database is locked" in lines[0].getMessage()
        assert lines[0].exc_info is None
        assert state.pending == []
    finally:
        logging.getLogger().removeHandler(caplog.handler)
        app.extensions["roster.db"].dispose()


def test_credential_like_query_parameters_are_not_kept(client, db, tenant):
    """A client that sends a credential in the query (``?api_key=``, ``?code=``, a SAS
    ``sig``, ``?id_token=``), which SCIM never reads, has it masked in the recorded query,
    as log lines and webhook URLs mask such values (app/url_masks.py); other parameters
    are kept as sent."""
    resp = client.get(f"{SPC}?api_key=rk_QryK3y1&code=QryC0de2&sig=QryS1g3&id_token=QryT4"
                      "&count=1", headers=tenant.headers)
    assert resp.status_code == 200
    [row] = _recorded(db, client.application)
    assert "Qry" not in row.query, row.query
    assert row.query == ("api_key=%5BREDACTED%5D&code=%5BREDACTED%5D&sig=%5BREDACTED%5D"
                         "&id_token=%5BREDACTED%5D&count=1")
