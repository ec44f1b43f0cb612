"""/api/v1 sends no entity tags, so an ``If-Match`` listing some can match nothing: RFC 9110
§13.1.1 says the server MUST NOT perform a write then, and answers 412. Such requests used
to run as if the header were absent. ``If-Match: *`` holds when the target exists."""

from __future__ import annotations

import pytest

from tests.api.conftest import make_key
from tests.api.test_frame import assert_problem
from tests.conftest import rows


@pytest.fixture
def admin(db, tenant) -> dict[str, str]:
    """The tenant admin's headers."""
    return make_key(db, "admin", tenant.org).headers


def _create(client, admin, name: str = "sso-a"):
    return client.post("/api/v1/orgs/acme/connections", headers=admin,
                       json={"name": name, "protocol": "saml"})


@pytest.mark.parametrize("tag", ['W/"1"', '"x"', '"a", "b"', '"*"', "*, W/\"1\""])
def test_a_write_with_an_if_match_tag_is_412_and_changes_nothing(client, db, admin, tag):
    """POST, PATCH and DELETE with entity tags in If-Match: 412 problem JSON, nothing
    written."""
    assert_problem(_create(client, {**admin, "If-Match": tag}), 412, "precondition-failed")
    assert rows(db, "SELECT count(*) FROM sso_connections")[0][0] == 0
    conn = _create(client, admin).get_json()
    path = f"/api/v1/orgs/acme/connections/{conn['id']}"
    headers = {**admin, "If-Match": tag}
    body = assert_problem(client.patch(path, headers=headers, json={"name": "renamed"}), 412,
                          "precondition-failed")
    assert "If-Match" in body["detail"]
    assert_problem(client.delete(path, headers=headers), 412, "precondition-failed")
    assert rows(db, "SELECT name FROM sso_connections") == [("sso-a",)]


def test_if_match_star_lets_a_write_on_an_existing_target_run(client, db, admin):
    """``*``: the collection or the connection exists, the write runs; a missing connection
    is still its 404."""
    star = {**admin, "If-Match": "*"}
    created = _create(client, star)
    assert created.status_code == 201, created.data
    path = f"/api/v1/orgs/acme/connections/{created.get_json()['id']}"
    assert client.patch(path, headers=star, json={"name": "renamed"}).status_code == 200
    assert client.delete(path, headers=star).status_code == 204
    assert_problem(client.delete(path, headers=star), 404, "not-found")


def test_reads_and_the_openapi_document(client, admin):
    """A GET is no write: its If-Match is not evaluated. The description names the 412 of
    every write and of no read."""
    assert client.get("/api/v1/orgs/acme/connections",
                      headers={**admin, "If-Match": '"x"'}).status_code == 200
    doc = client.get("/api/v1/openapi.json").get_json()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in ("get", "head"):
                assert "412" not in operation["responses"], (method, path)
            elif method in ("post", "put", "patch", "delete"):
                assert "412" in operation["responses"], (method, path)


@pytest.mark.parametrize("header", ["*", " * ", '"x", *'])
def test_a_write_with_if_none_match_star_is_412_and_changes_nothing(client, db, admin, header):
    """RFC 9110 §13.1.2: ``If-None-Match: *`` is false when the target has a current
    representation, and a write then MUST NOT be performed (412). Every /api/v1 write
    addresses an existing collection or resource: the stored rule set was replaced, a
    connection made, renamed and deleted as if the header were absent."""
    headers = {**admin, "If-None-Match": header}
    put = client.put("/api/v1/orgs/acme/mapping", headers=headers,
                     json={"policy": {"on_loss": "nothing"}, "rules": []})
    body = assert_problem(put, 412, "precondition-failed")
    assert "If-None-Match" in body["detail"]
    assert rows(db, "SELECT count(*) FROM mapping_revisions")[0][0] == 0
    assert_problem(_create(client, headers), 412, "precondition-failed")
    assert rows(db, "SELECT count(*) FROM sso_connections")[0][0] == 0
    conn = _create(client, admin).get_json()
    path = f"/api/v1/orgs/acme/connections/{conn['id']}"
    assert_problem(client.patch(path, headers=headers, json={"name": "renamed"}), 412,
                   "precondition-failed")
    assert_problem(client.delete(path, headers=headers), 412, "precondition-failed")
    assert rows(db, "SELECT name FROM sso_connections") == [("sso-a",)]
    audited = "SELECT count(*) FROM audit_events WHERE action LIKE 'sso:%'"
    assert rows(db, audited)[0][0] == 1


def test_if_none_match_listing_entity_tags_holds(client, db, admin):
    """No /api/v1 answer carries an entity tag, so a list of them matches nothing and the
    write runs; a GET does not evaluate the header."""
    headers = {**admin, "If-None-Match": 'W/"1", "x"'}
    assert _create(client, headers).status_code == 201
    assert client.get("/api/v1/orgs/acme/connections",
                      headers={**admin, "If-None-Match": "*"}).status_code == 200
