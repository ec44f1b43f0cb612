"""Manager references as Okta sends them (its profile's managerId: the manager's Okta id,
login or email, often before the manager is pushed): linked by id, externalId or userName,
kept until the manager arrives, never a refused user (app/directory/managers.py)."""

from __future__ import annotations

import pytest

from app.directory.managers import _WAITING
from tests.conftest import rows
from tests.scim.support import ENTERPRISE, PATCH_OP, Scim, assert_error, user_body


@pytest.fixture
def scim(client, tenant):
    return Scim(client, tenant)


def _user(scim: Scim, name: str, external_id: str, manager: str | None = None) -> dict:
    extra = {ENTERPRISE: {"manager": {"value": manager}}} if manager else {}
    return scim.create_user(name, externalId=external_id, **extra)


def _manager(scim: Scim, user_id: str) -> dict | None:
    return scim.get(f"/Users/{user_id}").get_json().get(ENTERPRISE, {}).get("manager")


def _stored(db, user_id: str) -> tuple:
    [row] = rows(db, "SELECT manager_id, manager_ref FROM users WHERE id = :u", u=user_id)
    return row.manager_id, row.manager_ref


def test_a_report_pushed_before_its_manager_is_linked_when_the_manager_arrives(scim, db):
    """Okta: the report names its manager by Okta id before the manager exists: 201 with
    no manager shown; the manager's create (externalId = that id) links it, the report's
    version moves and the portal hears user.updated."""
    report = _user(scim, "rep@acme.example", "00u2rep", manager="00u1boss")
    assert "manager" not in report.get(ENTERPRISE, {})
    assert _stored(db, report["id"]) == (None, "00u1boss")
    boss = _user(scim, "boss@acme.example", "00u1boss")
    shown = scim.get(f"/Users/{report['id']}")
    assert shown.get_json()[ENTERPRISE]["manager"]["value"] == boss["id"]
    assert shown.get_json()[ENTERPRISE]["manager"]["displayName"] == "boss@acme.example"
    assert shown.headers["ETag"] != report["meta"]["version"]
    assert _stored(db, report["id"]) == (boss["id"], None)
    [event] = rows(db, "SELECT payload FROM outbox_events WHERE type = 'user.updated' "
                       "AND aggregate_id = :u", u=report["id"])
    assert '"manager_id"' in str(event.payload).replace("'", '"')


@pytest.mark.parametrize("how", ["id", "externalId", "userName"])
def test_a_reference_naming_a_user_links_at_once(scim, db, how):
    """By Roster id (Entra), externalId (Okta's id) or userName in another case (a login)."""
    boss = _user(scim, "Boss@acme.example", "00u1boss")
    value = {"id": boss["id"], "externalId": "00u1boss", "userName": "BOSS@ACME.EXAMPLE"}[how]
    report = _user(scim, "rep@acme.example", "00u2rep", manager=value)
    assert report[ENTERPRISE]["manager"]["value"] == boss["id"]
    assert _stored(db, report["id"]) == (boss["id"], None)


def test_a_kept_reference_survives_a_patch_and_links_on_a_rename(scim, db):
    """A PATCH that does not touch the manager (Okta's deactivation) keeps the reference;
    a user renamed to the name it holds becomes the manager. A PUT without a manager
    forgets it."""
    report = _user(scim, "rep@acme.example", "00u2rep", manager="chief@acme.example")
    off = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}
    assert scim.patch(f"/Users/{report['id']}", off).status_code == 200
    assert _stored(db, report["id"]) == (None, "chief@acme.example")
    boss = _user(scim, "someone@acme.example", "00u1boss")
    rename = {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "userName", "value": "Chief@acme.example"}]}
    assert scim.patch(f"/Users/{boss['id']}", rename).status_code == 200
    assert _stored(db, report["id"]) == (boss["id"], None)
    other = _user(scim, "other@acme.example", "00u3oth", manager="nobody-yet")
    put = scim.put(f"/Users/{other['id']}", user_body("other@acme.example", externalId="00u3oth"))
    assert put.status_code == 200
    assert _stored(db, other["id"]) == (None, None)


def test_an_ambiguous_or_foreign_reference_links_to_nobody(scim, db, client, other_tenant):
    """Two users sharing the externalId name nobody in particular; another directory's
    user is never linked, and the answer is the one any unknown value gets."""
    _user(scim, "a@acme.example", "00u9dup")
    _user(scim, "b@acme.example", "00u9dup")
    report = _user(scim, "rep@acme.example", "00u2rep", manager="00u9dup")
    assert _stored(db, report["id"]) == (None, "00u9dup")
    theirs = Scim(client, other_tenant).create_user("eve@globex.example", externalId="00u7")
    foreign = _user(scim, "rep2@acme.example", "00u5rep", manager=theirs["id"])
    assert "manager" not in foreign.get(ENTERPRISE, {})
    assert _stored(db, foreign["id"]) == (None, theirs["id"])


def test_a_reference_longer_than_its_column_is_invalid_value(scim, db):
    """No user is named by 501 characters: 400, nothing written."""
    body = user_body("rep@acme.example", **{ENTERPRISE: {"manager": {"value": "m" * 501}}})
    assert_error(scim.post("/Users", body), 400, "invalidValue")
    assert rows(db, "SELECT count(*) FROM users")[0][0] == 0


def test_the_lookup_every_create_makes_reads_only_the_pending_index(db, tenant):
    """Every create looks for users waiting for it: an index lookup on the pending
    references (SQLite first walked the whole table in id order: 3 ms a create at 1,000
    users)."""
    with db.engine.connect() as conn:
        compiled = _WAITING.compile(conn)
        if db.dialect == "sqlite":
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}",
                                        (tenant.directory.id, '["boss"]')).fetchall()
            assert "SEARCH users USING INDEX ix_users_pending_manager" in str(plan), plan
        else:
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = conn.exec_driver_sql(f"EXPLAIN {compiled}", {
                "directory_id": tenant.directory.id, "folded": ["boss"]}).fetchall()
            assert "ix_users_pending_manager" in str(plan), plan
