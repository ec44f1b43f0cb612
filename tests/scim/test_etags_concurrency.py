"""ETags (RFC 7644 §3.14) and concurrent creates of the same userName."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from app.directory.users import _GET_USER_FOR_UPDATE, UserInput, create_user, get_user
from app.errors import Conflict
from app.models import Directory
from tests.conftest import OPERATOR, rows
from tests.scim.support import CORE_GROUP, PATCH_OP, Scim, assert_error, live_server, user_body


@pytest.fixture
def scim(client, tenant):
    """A SCIM client for the acme tenant."""
    return Scim(client, tenant)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_stale_if_match_is_412_and_changes_nothing(scim, db, method):
    """If-Match with an old version: 412 on PUT, PATCH and DELETE; the row is unchanged."""
    user = scim.create_user()
    scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "displayName", "value": "v2"}]})
    body = {"PUT": user_body(), "DELETE": None,
            "PATCH": {"schemas": [PATCH_OP], "Operations": [
                {"op": "replace", "path": "displayName", "value": "v3"}]}}[method]
    response = scim.request(method, f"/Users/{user['id']}", body,
                            headers={"If-Match": 'W/"1"'})
    assert_error(response, 412)
    assert rows(db, "SELECT display_name, version, deleted_at FROM users")[0] == ("v2", 2, None)


def test_current_if_match_succeeds_and_version_advances(scim):
    """If-Match with the current ETag applies; the new ETag is returned."""
    user = scim.create_user()
    response = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "displayName", "value": "v2"}]},
        headers={"If-Match": user["meta"]["version"]})
    assert response.status_code == 200
    assert response.headers["ETag"] == response.get_json()["meta"]["version"] == 'W/"2"'
    assert scim.put(f"/Users/{user['id']}", user_body(),
                    headers={"If-Match": "*"}).status_code == 200


@pytest.mark.parametrize("kind", ["Users", "Groups"])
@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize("tag", ['W/"1"', "*", '"1"', 'W/"7", W/"1"'])
def test_if_none_match_naming_the_resource_is_412_on_writes(scim, db, kind, method, tag):
    """RFC 9110 §13.1.2: If-None-Match that names the current version (or ``*``) fails a
    PUT, PATCH or DELETE with 412, which changes nothing; one naming another version passes."""
    resource = scim.create_user() if kind == "Users" else scim.create_group("Buyers")
    body = {"PUT": user_body() if kind == "Users" else {"schemas": [CORE_GROUP],
                                                          "displayName": "Sellers"},
            "DELETE": None,
            "PATCH": {"schemas": [PATCH_OP], "Operations": [
                {"op": "replace", "path": "displayName", "value": "v2"}]}}[method]
    path = f"/{kind}/{resource['id']}"
    assert_error(scim.request(method, path, body, headers={"If-None-Match": tag}), 412)
    unchanged = ("SELECT version, display_name, deleted_at FROM users" if kind == "Users"
                 else "SELECT version, display_name FROM groups")
    expected = (1, resource.get("displayName"), None)[:len(unchanged.split(","))]
    assert rows(db, unchanged) == [expected]
    passed = scim.request(method, path, body, headers={"If-None-Match": 'W/"9"'})
    assert passed.status_code in (200, 204)


@pytest.mark.parametrize("kind", ["Users", "Groups"])
def test_if_match_on_a_read_is_evaluated_before_if_none_match(scim, kind):
    """RFC 9110 §13.2.2: a GET whose If-Match names another version is 412 (and not 304,
    even when If-None-Match names the current one); one naming it answers as usual."""
    resource = scim.create_user() if kind == "Users" else scim.create_group("Buyers")
    path = f"/{kind}/{resource['id']}"
    assert_error(scim.get(path, headers={"If-Match": 'W/"2"', "If-None-Match": 'W/"1"'}), 412)
    assert scim.get(path, headers={"If-Match": 'W/"1"'}).status_code == 200
    assert scim.get(path, headers={"If-Match": "*", "If-None-Match": 'W/"1"'}).status_code == 304


def test_group_versions_follow_membership_changes(scim):
    """Adding a member changes the group's version, so stale If-Match on groups is 412."""
    group = scim.create_group("Buyers")
    member = scim.create_user()
    added = scim.patch(f"/Groups/{group['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": member["id"]}]}]},
        headers={"If-Match": 'W/"1"'})
    assert added.status_code == 204
    assert added.headers["ETag"] == 'W/"2"'
    assert_error(scim.put(f"/Groups/{group['id']}", {"schemas": [CORE_GROUP],
                                                     "displayName": "X"},
                          headers={"If-Match": 'W/"1"'}), 412)
    got = scim.get(f"/Groups/{group['id']}", headers={"If-None-Match": 'W/"2"'})
    assert got.status_code == 304


def _post(url, token, body):
    request = urllib.request.Request(
        url + "/scim/v2/Users", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_concurrent_creates_of_one_user_name_give_one_201_and_one_409(app, tenant, db):
    """Two simultaneous POSTs (different case) over real HTTP: exactly one wins."""
    for attempt in range(3):
        names = [f"race{attempt}@acme.example", f"RACE{attempt}@ACME.example"]
        results: list[tuple[int, dict]] = []
        barrier = threading.Barrier(2)

        def create(name, url, barrier=barrier, results=results):
            barrier.wait()
            results.append(_post(url, tenant.token, user_body(name)))

        with live_server(app) as url:
            threads = [threading.Thread(target=create, args=(n, url)) for n in names]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
        assert sorted(status for status, _ in results) == [201, 409]
        conflict = next(body for status, body in results if status == 409)
        assert (conflict["status"], conflict["scimType"]) == ("409", "uniqueness")
    assert rows(db, "SELECT count(*) FROM users")[0][0] == 3


def test_racing_sessions_hit_the_unique_index_and_get_conflict(db, tenant):
    """Session B checks before A commits; the unique index still turns B into a Conflict."""
    a_flushed, a_may_commit = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def session_a():
        with db.transaction() as session:
            directory = session.get(Directory, tenant.directory.id)
            create_user(session, directory, UserInput({"user_name": "dup@acme.example"}),
                        OPERATOR)
            a_flushed.set()
            a_may_commit.wait(timeout=10)
        outcome["a"] = "committed"

    def session_b():
        a_flushed.wait(timeout=10)
        # A commits shortly after B started (B's check or insert is waiting on A by then).
        threading.Timer(0.3, a_may_commit.set).start()
        try:
            with db.transaction() as session:
                directory = session.get(Directory, tenant.directory.id)
                create_user(session, directory, UserInput({"user_name": "DUP@acme.example"}),
                            OPERATOR)
            outcome["b"] = "committed"
        except Conflict as exc:
            outcome["b"] = exc

    threads = [threading.Thread(target=session_a), threading.Thread(target=session_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert outcome["a"] == "committed"
    assert isinstance(outcome["b"], Conflict)
    assert rows(db, "SELECT count(*) FROM users")[0][0] == 1


def test_concurrent_creates_of_one_organization_keep_its_audit_chain_whole(app, tenant, db):
    """Eight clients create users at once over real HTTP: each event is linked into the
    organization's chain at its commit, so the chain has every create, in order, no gap."""
    from app.audit.verify import verify_chain

    results: list[int] = []
    barrier = threading.Barrier(8)

    def create(client: int, url: str) -> None:
        barrier.wait()
        for n in range(5):
            status, _ = _post(url, tenant.token, user_body(f"c{client}.{n}@acme.example"))
            results.append(status)

    with live_server(app) as url:
        threads = [threading.Thread(target=create, args=(c, url)) for c in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert results == [201] * 40
    with db.transaction() as session:
        report = verify_chain(session, tenant.org.id)
    assert report.problem is None, report
    creates = rows(db, "SELECT seq FROM audit_events WHERE chain = :c AND action = "
                       "'user:create' ORDER BY seq", c=tenant.org.id)
    assert len(creates) == 40
    assert report.records == report.head_seq


def test_a_user_locked_for_a_change_joins_a_group_once_its_write_commits(app, tenant, db,
                                                                         dialect):
    """PUT, PATCH and DELETE lock the user's row FOR NO KEY UPDATE on PostgreSQL (ids never
    change), so another transaction's foreign-key check on it (KEY SHARE) does not wait:
    two users naming each other as manager deadlocked under FOR UPDATE. A group PATCH
    adding that user locks it too, in the lock order (app/mapping/reevaluation.py), and
    checks it live under the lock, so it waits for the user's write and then goes
    through: were that write a DELETE, the member would be refused as unknown instead of
    joining a deleted user (tests/scim/test_member_delete_race.py)."""
    scim = Scim(app.test_client(), tenant)
    user = scim.create_user()
    group = scim.post("/Groups", {"schemas": [CORE_GROUP], "displayName": "Buyers"}).get_json()
    if dialect != "postgresql":  # SQLite has one writer at a time and no row locks
        compiled = _GET_USER_FOR_UPDATE.compile(dialect=postgresql.dialect())
        assert str(compiled).endswith("FOR NO KEY UPDATE")
        return
    outcome: dict[str, int] = {}
    joined = threading.Event()

    def join() -> None:
        response = Scim(app.test_client(), tenant).patch(f"/Groups/{group['id']}", {
            "schemas": [PATCH_OP],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": user["id"]}]}]})
        outcome["status"] = response.status_code
        joined.set()

    with db.transaction() as session:
        get_user(session, tenant.directory.id, user["id"], for_update=True)
        # A manager reference's foreign-key check (KEY SHARE) does not wait for it.
        probe = sa.create_engine(db.url)
        with probe.connect() as other, other.begin():
            other.execute(sa.text("SET LOCAL lock_timeout = '2s'"))
            assert other.execute(sa.text("SELECT id FROM users WHERE id = :u FOR KEY SHARE"),
                                 {"u": user["id"]}).all()
        probe.dispose()
        worker = threading.Thread(target=join)
        worker.start()
        assert not joined.wait(1), "the member was added while its user's write was open"
    assert joined.wait(30)
    worker.join(30)
    assert outcome["status"] == 204
    assert rows(db, "SELECT count(*) FROM memberships")[0][0] == 1


@pytest.mark.parametrize(("header", "tag", "status"), [
    ("If-None-Match", '"1,2"', 200), ("If-None-Match", '"2", "1,0"', 200),
    ("If-None-Match", '"*"', 200), ("If-None-Match", 'W/"1" junk', 200),
    ("If-None-Match", '"0",, W/"1"', 304), ("If-None-Match", ' W/"1" ', 304),
    ("If-Match", '"1,2"', 412), ("If-Match", '"*"', 412), ("If-Match", 'W/"1" junk', 412),
    ("If-Match", '"0", W/"1"', 200), ("If-Match", "*", 200)])
def test_precondition_lists_are_read_as_entity_tags(scim, header, tag, status):
    """RFC 9110 §8.8.3: a comma inside the quotes is part of one tag, and a quoted ``"*"`` is
    a tag, not the wildcard. ``"1,2"`` was read as the versions 1 and 2 (a 304, and a write
    with a stale If-Match applied), ``"*"`` as the wildcard. A malformed list names nothing."""
    user = scim.create_user()
    assert user["meta"]["version"] == 'W/"1"'
    response = scim.get(f"/Users/{user['id']}", headers={header: tag})
    assert response.status_code == status, response.get_data(as_text=True)
    if header == "If-Match":
        patch = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "displayName", "value": "v2"}]}, headers={header: tag})
        assert patch.status_code == status
