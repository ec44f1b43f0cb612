"""POST /scim/v2/Bulk (RFC 7644 §3.7): operations processed in order, failOnErrors counted
as they are, a long chain of bulkId references, and each operation made as its client's."""

from __future__ import annotations

from tests.conftest import rows
from tests.scim.test_bulk import BULK, PATCH, USER, _user

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CLIENT = {"REMOTE_ADDR": "203.0.113.9"}
MALFORMED = {"method": "GET", "path": "/Users"}


def _bulk(client, tenant, operations, **extra):
    return client.post("/scim/v2/Bulk", headers=tenant.headers, environ_base=CLIENT,
                       json={"schemas": [BULK], "Operations": operations, **extra})


def test_fail_on_errors_counts_a_malformed_operation_where_it_stands(client, db, tenant):
    """A malformed operation was counted against failOnErrors before any operation ran:
    with failOnErrors=1 the valid POST before it never ran and the response named only the
    malformed one. Operations run in order (§3.7.3: "the result of all processed
    operations"): the POST before it is created, the ones after it are not attempted."""
    response = _bulk(client, tenant, [_user("a", "a@acme.com"), MALFORMED,
                                      _user("c", "c@acme.com")], failOnErrors=1)
    ops = response.get_json()["Operations"]
    assert [(o["method"], o["status"]) for o in ops] == [("POST", "201"), ("GET", "400")]
    assert [r.user_name for r in rows(db, "SELECT user_name FROM users")] == ["a@acme.com"]


def test_fail_on_errors_stops_at_the_errors_met_in_order(client, db, tenant):
    """failOnErrors=2 with a malformed operation first and last: the run stopped at the two
    malformed ones, reporting the last as processed while the valid operations before it
    never ran. In order: the first malformed one, a create, a conflict (the second error),
    and the run ends there."""
    response = _bulk(client, tenant, [
        MALFORMED, _user("b", "b@acme.com"), _user("dup", "B@ACME.com"),
        _user("d", "d@acme.com"), {"method": "DELETE", "path": "/Users"},
    ], failOnErrors=2)
    ops = response.get_json()["Operations"]
    assert [o["status"] for o in ops] == ["400", "201", "409"]
    assert [o.get("bulkId") for o in ops] == [None, "b", "dup"]
    assert [r.user_name for r in rows(db, "SELECT user_name FROM users")] == ["b@acme.com"]


def test_without_fail_on_errors_every_operation_is_answered_in_request_order(
        client, db, tenant):
    """Malformed operations among valid ones: each gets its own result at its own place."""
    response = _bulk(client, tenant, [MALFORMED, _user("a", "a@acme.com"), "nothing",
                                      _user("b", "b@acme.com")])
    assert [o["status"] for o in response.get_json()["Operations"]] == [
        "400", "201", "400", "201"]


def test_a_chain_of_references_each_to_the_next_operation_resolves_in_full(
        client, db, tenant):
    """Each user names the next one in the list as its manager (a chain that resolves from
    the end): every user is created with its manager. The scheduler rebuilt the set of
    pending bulkIds for every waiting operation on every pass (cubic: 11 s of CPU for a
    chain of 1000 before any operation's own work, near gunicorn's 30 s timeout); it is
    kept once per request now. (The time is not asserted: this checks the result.)"""
    n = 60
    operations = [{"method": "POST", "path": "/Users", "bulkId": f"u{i}", "data": {
        "schemas": [USER, ENTERPRISE], "userName": f"u{i}@acme.com",
        **({ENTERPRISE: {"manager": {"value": f"bulkId:u{i + 1}"}}} if i < n - 1 else {})}}
        for i in range(n)]
    ops = _bulk(client, tenant, operations).get_json()["Operations"]
    assert [o["status"] for o in ops] == ["201"] * n
    assert [o["bulkId"] for o in ops] == [f"u{i}" for i in range(n)]
    ids = {o["bulkId"]: o["location"].rsplit("/", 1)[1] for o in ops}
    pairs = {(r.id, r.manager_id) for r in rows(db, "SELECT id, manager_id FROM users")}
    assert pairs == {(ids[f"u{i}"], ids[f"u{i + 1}"] if i < n - 1 else None)
                     for i in range(n)}


def test_a_deprovisioning_through_bulk_records_the_clients_address(client, db, tenant):
    """The deprovisioning record of a user set inactive through Bulk had source_ip NULL:
    each operation ran in a request built without the client's address. It names the
    IdP's address, as the same PATCH sent on its own URL does."""
    made = [client.post("/scim/v2/Users", headers=tenant.headers, environ_base=CLIENT,
                        json={"schemas": [USER], "userName": f"{n}@acme.com"}).get_json()["id"]
            for n in ("direct", "bulk")]
    inactive = {"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "active", "value": False}]}
    assert client.patch(f"/scim/v2/Users/{made[0]}", headers=tenant.headers,
                        environ_base=CLIENT, json=inactive).status_code == 200
    response = _bulk(client, tenant, [{"method": "PATCH", "path": f"/Users/{made[1]}",
                                       "data": inactive}])
    assert response.get_json()["Operations"][0]["status"] == "200"
    records = rows(db, "SELECT user_id, source_ip, trigger FROM deprovision_records")
    assert sorted((r.user_id, r.source_ip, r.trigger) for r in records) == sorted(
        (user_id, "203.0.113.9", "scim_active_false") for user_id in made)


def test_a_version_holding_a_line_break_fails_its_operation_not_the_whole_request(
        client, db, tenant):
    """A ``version`` with CR or LF cannot be an If-Match header: building the operation's
    request raised, and the whole Bulk answered 500 after the operations before it had
    committed (their results lost, the rest never run). It is a 400 of that operation
    (an entity-tag holds no control character, RFC 9110 §8.8.3); the others run."""
    response = _bulk(client, tenant, [
        _user("a", "a@acme.com"),
        {"method": "DELETE", "path": "/Users/bulkId:a", "version": 'W/"1"\r\nX-Other: 1'},
        {"method": "DELETE", "path": "/Users/bulkId:a", "version": 'W/"1"\n'},
        _user("c", "c@acme.com"),
    ])
    assert response.status_code == 200
    ops = response.get_json()["Operations"]
    assert [o["status"] for o in ops] == ["201", "400", "400", "201"]
    assert ops[1]["response"]["scimType"] == "invalidSyntax"
    assert sorted(r.user_name for r in rows(
        db, "SELECT user_name FROM users WHERE deleted_at IS NULL")) == [
        "a@acme.com", "c@acme.com"]


def test_a_path_holding_a_control_character_is_invalid_path_not_another_resource(
        client, db, tenant):
    """``/Users/<id with a line break inside>`` named no resource, but the request built for
    it dropped the line break (URL parsing strips tabs and line breaks) and the DELETE
    removed the user whose id is the rest. It is a 400 invalidPath; nothing is deleted."""
    user_id = client.post("/scim/v2/Users", headers=tenant.headers, json={
        "schemas": [USER], "userName": "kept@acme.com"}).get_json()["id"]
    ops = _bulk(client, tenant, [
        {"method": "DELETE", "path": f"/Users/{user_id[:8]}{cut}{user_id[8:]}"}
        for cut in ("\n", "\r", "\t")]).get_json()["Operations"]
    assert [(o["status"], o["response"]["scimType"]) for o in ops] == [
        ("400", "invalidPath")] * 3
    assert rows(db, "SELECT deleted_at FROM users WHERE id = :i", i=user_id) == [(None,)]


def test_unresolvable_circular_references_count_against_fail_on_errors(client, db, tenant):
    """Two users naming each other as manager cannot be created (409 each, RFC 7644 §3.7.2
    lets the server stop there). With failOnErrors=1 both were answered, the second after
    the limit was reached; the run ends at the first."""
    operations = [{"method": "POST", "path": "/Users", "bulkId": me, "data": {
        "schemas": [USER, ENTERPRISE], "userName": f"{me}@acme.com",
        ENTERPRISE: {"manager": {"value": f"bulkId:{other}"}}}}
        for me, other in (("a", "b"), ("b", "a"))]
    ops = _bulk(client, tenant, operations, failOnErrors=1).get_json()["Operations"]
    assert [(o["bulkId"], o["status"]) for o in ops] == [("a", "409")]
    ops = _bulk(client, tenant, operations).get_json()["Operations"]
    assert [(o["bulkId"], o["status"]) for o in ops] == [("a", "409"), ("b", "409")]
    assert rows(db, "SELECT id FROM users") == []


def test_an_operation_referring_to_its_own_bulk_id_is_told_so(client, db, tenant):
    """A user naming itself as manager by its own bulkId: 409, and the detail says the
    reference is to the operation itself (it said the bulkId "did not create a resource",
    as if another operation had failed)."""
    ops = _bulk(client, tenant, [{"method": "POST", "path": "/Users", "bulkId": "me", "data": {
        "schemas": [USER, ENTERPRISE], "userName": "me@acme.com",
        ENTERPRISE: {"manager": {"value": "bulkId:me"}}}}]).get_json()["Operations"]
    assert [(o["bulkId"], o["status"]) for o in ops] == [("me", "409")]
    assert "refers to its own bulkId 'me'" in ops[0]["response"]["detail"]
    assert rows(db, "SELECT id FROM users") == []
