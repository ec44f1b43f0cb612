"""POST /scim/v2/Bulk (RFC 7644 §3.7): bulkId references, failOnErrors, limits, per-op status."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask

from app import create_app
from app.scim.recorder import flush
from tests.conftest import app_overrides, rows

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"


def _bulk(client, tenant, operations, **extra):
    return client.post("/scim/v2/Bulk", headers=tenant.headers,
                       json={"schemas": [BULK], "Operations": operations, **extra})


def _user(bulk_id, name):
    return {"method": "POST", "path": "/Users", "bulkId": bulk_id,
            "data": {"schemas": [USER], "userName": name}}


@contextmanager
def _limited_app(database_url: str, **scim: int) -> Iterator[Flask]:
    """A second app with other SCIM limits; its recorded requests are written before the
    test ends (a late write from its own thread would land after the tables are emptied)."""
    built = create_app({**app_overrides(database_url), "scim": scim})
    try:
        yield built
    finally:
        flush(built)
        built.extensions["roster.db"].dispose()


def _too_large(client, tenant):
    ops = [_user(str(i), f"{i}@acme.com") for i in range(10)]
    return client.post("/scim/v2/Bulk", headers=tenant.headers,
                       data=json.dumps({"schemas": [BULK], "Operations": ops}),
                       content_type="application/scim+json")


def test_creates_users_and_a_group_referencing_them_by_bulk_id(client, db, tenant):
    """The RFC 7644 §3.7.2 example: a group whose members are bulkId references."""
    response = _bulk(client, tenant, [
        _user("alice", "alice@acme.com"), _user("bob", "bob@acme.com"),
        {"method": "POST", "path": "/Groups", "bulkId": "team",
         "data": {"schemas": [GROUP], "displayName": "Team",
                  "members": [{"value": "bulkId:alice"}, {"value": "bulkId:bob"}]}},
    ])
    assert response.status_code == 200
    assert response.mimetype == "application/scim+json"
    body = response.get_json()
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:BulkResponse"]
    assert [(o["method"], o["bulkId"], o["status"]) for o in body["Operations"]] == \
        [("POST", "alice", "201"), ("POST", "bob", "201"), ("POST", "team", "201")]
    ids = {r.user_name: r.id for r in rows(db, "SELECT id, user_name FROM users")}
    assert body["Operations"][0]["location"].endswith(f"/Users/{ids['alice@acme.com']}")
    assert body["Operations"][0]["version"].startswith("W/")
    members = rows(db, "SELECT user_id FROM memberships")
    assert {m.user_id for m in members} == set(ids.values())


def test_reference_to_a_later_operation_waits_for_it(client, db, tenant):
    """A group listed before the user it references is created after it (§3.7.2)."""
    response = _bulk(client, tenant, [
        {"method": "POST", "path": "/Groups", "bulkId": "g",
         "data": {"schemas": [GROUP], "displayName": "Early",
                  "members": [{"value": "bulkId:late"}]}},
        _user("late", "late@acme.com"),
    ])
    statuses = [o["status"] for o in response.get_json()["Operations"]]
    assert statuses == ["201", "201"]
    assert len(rows(db, "SELECT * FROM memberships")) == 1


def test_bulk_id_in_a_path_and_in_patch_values(client, db, tenant):
    """``bulkId:x`` is resolved inside a path and inside PATCH member values."""
    response = _bulk(client, tenant, [
        _user("u", "u@acme.com"),
        {"method": "POST", "path": "/Groups", "bulkId": "g",
         "data": {"schemas": [GROUP], "displayName": "Later"}},
        {"method": "PATCH", "path": "/Groups/bulkId:g",
         "data": {"schemas": [PATCH], "Operations": [
             {"op": "add", "path": "members", "value": [{"value": "bulkId:u"}]}]}},
    ])
    ops = response.get_json()["Operations"]
    assert [o["status"] for o in ops] in (["201", "201", "200"], ["201", "201", "204"])
    assert len(rows(db, "SELECT * FROM memberships")) == 1


def test_bulk_id_inside_text_is_data_not_a_reference(client, db, tenant):
    """Only a whole value ``bulkId:x`` is a reference (RFC 7644 §3.7.2): a title that
    mentions one is stored as sent, and naming an undeclared one fails nothing."""
    user = _user("b", "b@acme.com")
    user["data"] |= {"title": "Ticket bulkId:a", "nickName": "see bulkId:nowhere"}
    response = _bulk(client, tenant, [_user("a", "a@acme.com"), user])
    assert [o["status"] for o in response.get_json()["Operations"]] == ["201", "201"]
    assert rows(db, "SELECT title, nick_name FROM users WHERE user_name = 'b@acme.com'") \
        == [("Ticket bulkId:a", "see bulkId:nowhere")]


def test_one_failure_does_not_undo_the_others(client, db, tenant):
    """Each operation is its own transaction: a 409 leaves the created users in place."""
    response = _bulk(client, tenant, [
        _user("a", "a@acme.com"), _user("dup", "A@ACME.com"), _user("c", "c@acme.com"),
    ])
    ops = response.get_json()["Operations"]
    assert [o["status"] for o in ops] == ["201", "409", "201"]
    assert ops[1]["response"]["scimType"] == "uniqueness"
    assert ops[1]["response"]["status"] == "409"
    assert "location" not in ops[1]
    assert sorted(r.user_name for r in rows(db, "SELECT user_name FROM users")) == \
        ["a@acme.com", "c@acme.com"]


def test_fail_on_errors_stops_processing(client, db, tenant):
    """failOnErrors=1: the first error ends the run; later operations are not attempted."""
    response = _bulk(client, tenant, [
        _user("a", "a@acme.com"),
        {"method": "POST", "path": "/Users", "bulkId": "bad", "data": {"schemas": [USER]}},
        _user("c", "c@acme.com"),
    ], failOnErrors=1)
    ops = response.get_json()["Operations"]
    assert [o["status"] for o in ops] == ["201", "400"]
    assert [r.user_name for r in rows(db, "SELECT user_name FROM users")] == ["a@acme.com"]


def test_reference_to_a_failed_create_is_409(client, db, tenant):
    """A reference to a POST that failed cannot be resolved: 409 invalidValue."""
    response = _bulk(client, tenant, [
        {"method": "POST", "path": "/Users", "bulkId": "bad", "data": {"schemas": [USER]}},
        {"method": "POST", "path": "/Groups", "bulkId": "g",
         "data": {"schemas": [GROUP], "displayName": "G",
                  "members": [{"value": "bulkId:bad"}]}},
    ])
    ops = response.get_json()["Operations"]
    assert [o["status"] for o in ops] == ["400", "409"]
    assert ops[1]["response"]["scimType"] == "invalidValue"
    assert rows(db, "SELECT id FROM groups") == []


def test_put_delete_and_stale_version(client, db, tenant):
    """PUT and DELETE by id; a stale ``version`` is 412 for that operation only."""
    created = client.post("/scim/v2/Users", headers=tenant.headers,
                          json={"schemas": [USER], "userName": "p@acme.com"}).get_json()
    other = client.post("/scim/v2/Users", headers=tenant.headers,
                        json={"schemas": [USER], "userName": "q@acme.com"}).get_json()
    response = _bulk(client, tenant, [
        {"method": "PUT", "path": f"/Users/{created['id']}", "version": 'W/"999"',
         "data": {"schemas": [USER], "userName": "p2@acme.com"}},
        {"method": "PUT", "path": f"/Users/{created['id']}",
         "data": {"schemas": [USER], "userName": "p3@acme.com"}},
        {"method": "DELETE", "path": f"/Users/{other['id']}"},
    ])
    ops = response.get_json()["Operations"]
    assert [o["status"] for o in ops] == ["412", "200", "204"]
    assert ops[1]["location"].endswith(f"/Users/{created['id']}")
    names = [r.user_name for r in rows(db, "SELECT user_name FROM users WHERE deleted_at IS NULL")]
    assert names == ["p3@acme.com"]


@pytest.mark.parametrize(("operation", "scim_type"), [
    ({"method": "GET", "path": "/Users"}, "invalidValue"),
    ({"method": "POST", "path": "/Bulk", "bulkId": "x", "data": {}}, "invalidPath"),
    ({"method": "POST", "path": "/Users", "data": {"schemas": [USER], "userName": "n"}},
     "invalidValue"),
    ({"method": "DELETE", "path": "/Users"}, "invalidPath"),
    ({"method": "PATCH", "path": "/Users/x"}, "invalidSyntax"),
    ("not an object", "invalidSyntax"),
])
def test_malformed_operations_fail_alone(client, db, tenant, operation, scim_type):
    """A malformed operation gets its own 400 and the next one still runs."""
    response = _bulk(client, tenant, [operation, _user("ok", "ok@acme.com")])
    assert response.status_code == 200
    ops = response.get_json()["Operations"]
    assert ops[0]["status"] == "400"
    assert ops[0]["response"]["scimType"] == scim_type
    assert ops[1]["status"] == "201"


@pytest.mark.parametrize("schemas", [None, ["urn:x"], BULK])
def test_a_bulk_request_without_its_schema_is_400_and_runs_nothing(client, db, tenant, schemas):
    """Every other SCIM message is checked for its schema; a BulkRequest is too (§3.7)."""
    body = {"Operations": [_user("a", "a@acme.com")]}
    if schemas is not None:
        body["schemas"] = schemas
    response = client.post("/scim/v2/Bulk", json=body,
                           headers={**tenant.headers, "Content-Type": "application/scim+json"})
    assert response.status_code == 400
    assert response.get_json()["scimType"] == "invalidSyntax"
    assert rows(db, "SELECT id FROM users") == []


@pytest.mark.parametrize("version", [5, True, ["W/\"1\""], {"v": 1}])
def test_a_version_that_is_not_a_string_fails_its_operation(client, db, tenant, version):
    """A version that is not an ETag string was ignored, and the DELETE it should have
    guarded ran without its If-Match check."""
    created = client.post("/scim/v2/Users", json={"schemas": [USER], "userName": "v@acme.com"},
                          headers={**tenant.headers, "Content-Type": "application/scim+json"})
    user_id = created.get_json()["id"]
    response = _bulk(client, tenant, [{"method": "DELETE", "path": f"/Users/{user_id}",
                                       "version": version}])
    op = response.get_json()["Operations"][0]
    assert (op["status"], op["response"]["scimType"]) == ("400", "invalidSyntax")
    assert rows(db, "SELECT deleted_at FROM users")[0].deleted_at is None


def test_a_bulk_id_used_twice_is_400_invalid_value(client, tenant):
    """uniqueness is a 409's scimType (RFC 7644 Table 9); a repeated bulkId is a bad value."""
    ops = _bulk(client, tenant, [_user("a", "a@acme.com"), _user("a", "b@acme.com")]) \
        .get_json()["Operations"]
    assert [o["status"] for o in ops] == ["201", "400"]
    assert ops[1]["response"]["scimType"] == "invalidValue"


def test_too_many_operations_is_413(database_url, tenant, db):
    """More operations than bulk_max_operations: 413 (no scimType: tooMany is about filter
    results, RFC 7644 Table 9), nothing written."""
    with _limited_app(database_url, bulk_max_operations=2) as limited:
        response = _bulk(limited.test_client(), tenant, [_user(str(i), f"{i}@acme.com")
                                                         for i in range(3)])
    assert response.status_code == 413
    body = response.get_json()
    assert body["status"] == "413"
    assert "scimType" not in body
    assert "maxOperations (2)" in body["detail"]
    assert rows(db, "SELECT id FROM users") == []


def test_payload_over_the_limit_is_413(database_url, tenant, db):
    """A body larger than bulk_max_payload_bytes: 413 SCIM error, nothing written."""
    with _limited_app(database_url, bulk_max_payload_bytes=500) as limited:
        response = _too_large(limited.test_client(), tenant)
    assert response.status_code == 413
    assert response.get_json()["status"] == "413"
    assert rows(db, "SELECT id FROM users") == []
    assert [r.status for r in rows(db, "SELECT status FROM scim_requests")] == [413]


def test_flushing_one_app_writes_what_another_app_recorded_on_its_database(
        app, database_url, tenant, db):
    """The suite's flush (its own app's) also writes a second app's buffered 413 record at
    once, not 0.2 s later from that app's thread, after the tables were emptied."""
    other = create_app({**app_overrides(database_url), "scim": {"bulk_max_payload_bytes": 500}})
    try:
        assert _too_large(other.test_client(), tenant).status_code == 413
        flush(app)
        assert [r.status for r in rows(db, "SELECT status FROM scim_requests")] == [413]
    finally:
        other.extensions["roster.db"].dispose()


def test_bad_token_is_one_401(client, db, tenant):
    """Authentication happens once for the whole request."""
    response = client.post("/scim/v2/Bulk", headers={"Authorization": "Bearer rst_bad"},
                           json={"schemas": [BULK], "Operations": [_user("a", "a@x.com")]})
    assert response.status_code == 401
    assert rows(db, "SELECT id FROM users") == []


def test_bulk_is_recorded_once_with_the_notes_of_its_operations(client, db, tenant):
    """The flight recorder keeps the Bulk request itself, not one row per operation."""
    _bulk(client, tenant, [_user("a", "a@acme.com"), {
        "method": "PATCH", "path": "/Users/bulkId:a", "data": {"schemas": [PATCH], "Operations": [
            {"op": "Replace", "path": "active", "value": "False"}]}}])
    flush(client.application)
    recorded = rows(db, "SELECT path, status, notes FROM scim_requests")
    assert [(r.path, r.status) for r in recorded] == [("/scim/v2/Bulk", 200)]
    notes = recorded[0].notes if isinstance(recorded[0].notes, list) \
        else json.loads(recorded[0].notes)
    assert {"capitalised_op", "string_boolean"} <= set(notes)


def test_service_provider_config_advertises_bulk_limits(client, tenant):
    """ServiceProviderConfig tells the truth about Bulk and its limits."""
    spc = client.get("/scim/v2/ServiceProviderConfig", headers=tenant.headers).get_json()
    assert spc["bulk"] == {"supported": True, "maxOperations": 1000,
                           "maxPayloadSize": 1048576}


def test_bulk_payload_limit_cannot_exceed_the_body_limit():
    """The advertised maxPayloadSize is never larger than what the app accepts at all."""
    from app.settings import SettingsError, load_settings

    with pytest.raises(SettingsError) as info:
        load_settings({"app": {"max_body_bytes": 1000},
                       "scim": {"bulk_max_payload_bytes": 2000}}, environ={})
    assert "scim.bulk_max_payload_bytes" in str(info.value)
