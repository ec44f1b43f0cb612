"""Versions stay true when a user is SCIM-deleted or restored (RFC 7644 §3.14, RFC 9110
§13): its groups' ``members`` and its reports' ``manager`` change without a write to the
group or the report, and their ``meta.version``, ``ETag`` and ``meta.lastModified`` move."""

from __future__ import annotations

import time

from tests.scim.support import ENTERPRISE, PATCH_OP, Scim, assert_error, user_body


def _user(scim: Scim, name: str, manager: str | None = None) -> str:
    extra = {ENTERPRISE: {"manager": {"value": manager}}} if manager else {ENTERPRISE: {}}
    return scim.create_user(f"{name}@acme.example", externalId=f"ext-{name}", **extra)["id"]


def _restore(scim: Scim, name: str) -> str:
    response = scim.post("/Users", user_body(f"{name}@acme.example", externalId=f"ext-{name}",
                                             **{ENTERPRISE: {}}))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def _read(scim: Scim, path: str, etag: str | None = None) -> tuple[int, str, dict]:
    headers = {"If-None-Match": etag} if etag else {}
    response = scim.get(path, headers=headers)
    body = response.get_json() if response.status_code == 200 else {}
    return response.status_code, response.headers["ETag"], body


def test_a_deleted_and_restored_member_moves_its_groups_version(client, tenant):
    """GET /Groups/G with the ETag read before its member's DELETE is a 200 without the
    member (not a 304 keeping it), with a new version and lastModified; the new ETag is a
    304; a restore moves it again."""
    scim = Scim(client, tenant)
    ada, bob = _user(scim, "ada"), _user(scim, "bob")
    group = scim.create_group("Buyers", members=[ada, bob])["id"]
    path = f"/Groups/{group}"
    _, before, body = _read(scim, path)
    assert body["meta"]["version"] == before
    time.sleep(0.01)
    assert scim.delete(f"/Users/{ada}").status_code == 204
    status, after, body = _read(scim, path, before)
    assert status == 200
    assert after != before
    assert [m["value"] for m in body["members"]] == [bob]
    assert body["meta"]["version"] == after
    assert body["meta"]["lastModified"] > body["meta"]["created"]
    hidden_at = body["meta"]["lastModified"]
    assert _read(scim, path, after)[0] == 304
    # Filters and sorting see lastModified as it is shown (an incremental sync finds it).
    since = scim.get(f'/Groups?filter=meta.lastModified ge "{hidden_at}"').get_json()
    assert [g["id"] for g in since["Resources"]] == [group]
    assert scim.get(f'/Groups?filter=meta.lastModified gt "{hidden_at}"'
                    ).get_json()["totalResults"] == 0
    time.sleep(0.01)
    assert _restore(scim, "ada") == ada
    status, restored, body = _read(scim, path, after)
    assert status == 200
    assert restored not in (before, after)
    assert sorted(m["value"] for m in body["members"]) == sorted([ada, bob])
    assert body["meta"]["lastModified"] > hidden_at
    assert _read(scim, path, restored)[0] == 304


def test_a_stale_group_version_after_a_members_delete_is_412(client, tenant):
    """If-Match with the version read before the member's DELETE: 412 on PUT, PATCH and
    DELETE of the group; with the new version they apply."""
    scim = Scim(client, tenant)
    ada, bob = _user(scim, "ada"), _user(scim, "bob")
    group = scim.create_group("Buyers", members=[ada, bob])["id"]
    path = f"/Groups/{group}"
    stale = _read(scim, path)[1]
    assert scim.delete(f"/Users/{ada}").status_code == 204
    patch = {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "displayName", "value": "Sellers"}]}
    assert_error(scim.patch(path, patch, headers={"If-Match": stale}), 412)
    assert_error(scim.delete(path, headers={"If-Match": stale}), 412)
    current = _read(scim, path)[1]
    response = scim.patch(path, patch, headers={"If-Match": current})
    assert response.status_code == 204
    assert response.headers["ETag"] not in (stale, current)
    assert response.headers["ETag"] == _read(scim, path)[1]


def test_excluding_members_still_carries_the_moved_version(client, tenant):
    """A list page without members (excludedAttributes=members) shows each group's version
    as GET /Groups/{id} does, moved by a member's delete."""
    scim = Scim(client, tenant)
    ada = _user(scim, "ada")
    groups = [scim.create_group(f"G{i}", members=[ada])["id"] for i in range(3)]
    other = scim.create_group("Other")["id"]
    assert scim.delete(f"/Users/{ada}").status_code == 204
    page = scim.get("/Groups?excludedAttributes=members").get_json()["Resources"]
    versions = {g["id"]: g["meta"]["version"] for g in page}
    for gid in [*groups, other]:
        assert versions[gid] == _read(scim, f"/Groups/{gid}")[1]
    assert all(versions[gid] != versions[other] for gid in groups)


def test_a_deleted_and_restored_manager_moves_its_reports_version(client, tenant):
    """GET /Users/R with the ETag read before its manager's DELETE is a 200 without
    ``manager`` (not a 304 keeping it), with a new version and lastModified; If-Match with
    the old one is 412 on R's writes; a restore moves it again."""
    scim = Scim(client, tenant)
    boss = _user(scim, "boss")
    report = _user(scim, "rita", boss)
    path = f"/Users/{report}"
    _, before, body = _read(scim, path)
    assert body[ENTERPRISE]["manager"]["value"] == boss
    time.sleep(0.01)
    assert scim.delete(f"/Users/{boss}").status_code == 204
    status, after, body = _read(scim, path, before)
    assert status == 200
    assert after != before
    assert "manager" not in body.get(ENTERPRISE, {})
    assert body["meta"]["version"] == after
    assert body["meta"]["lastModified"] > body["meta"]["created"]
    assert _read(scim, path, after)[0] == 304
    hidden_at = body["meta"]["lastModified"]
    since = scim.get(f'/Users?filter=meta.lastModified ge "{hidden_at}"').get_json()
    assert {u["id"] for u in since["Resources"]} == {report, boss} - {boss}
    ordered = scim.get("/Users?sortBy=meta.lastModified").get_json()["Resources"]
    assert ordered[-1]["id"] == report
    patch = {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "title", "value": "Buyer"}]}
    assert_error(scim.patch(path, patch, headers={"If-Match": before}), 412)
    assert _restore(scim, "boss") == boss
    status, restored, body = _read(scim, path, after)
    assert status == 200
    assert restored not in (before, after)
    assert body[ENTERPRISE]["manager"]["value"] == boss
    response = scim.patch(path, patch, headers={"If-Match": restored})
    assert response.status_code == 200
    assert response.headers["ETag"] == response.get_json()["meta"]["version"]
    assert response.headers["ETag"] == _read(scim, path)[1]


def test_a_managers_new_display_name_moves_its_reports_version(client, tenant):
    """A report shows its manager's displayName: a rename of the manager moves the report's
    version (a 304 would keep the old name); an unrelated change of the manager does not."""
    scim = Scim(client, tenant)
    boss = _user(scim, "boss")
    report = _user(scim, "rita", boss)
    path = f"/Users/{report}"
    before = _read(scim, path)[1]
    title = {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "title", "value": "Head of Buying"}]}
    assert scim.patch(f"/Users/{boss}", title).status_code == 200
    assert _read(scim, path, before)[0] == 304
    rename = {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "displayName", "value": "The Boss"}]}
    assert scim.patch(f"/Users/{boss}", rename).status_code == 200
    status, after, body = _read(scim, path, before)
    assert status == 200
    assert after != before
    assert body[ENTERPRISE]["manager"]["displayName"] == "The Boss"


def test_a_purged_managers_reports_get_a_version_never_shown(client, db, tenant):
    """A report whose manager is purged after retention loses the link: it showed no manager
    already, but without the manager's part its version would be the one it had before the
    manager's delete (with the manager): the purge moves its own version instead."""
    from datetime import timedelta

    from app.db import utcnow
    from app.lifecycle.batches import purge_deleted
    from tests.conftest import OPERATOR

    scim = Scim(client, tenant)
    boss = _user(scim, "boss")
    report = _user(scim, "rita", boss)
    path = f"/Users/{report}"
    seen = {_read(scim, path)[1]}
    assert scim.delete(f"/Users/{boss}").status_code == 204
    seen.add(_read(scim, path)[1])
    with db.transaction() as session:
        assert purge_deleted(session, OPERATOR, retention_days=30,
                             now=utcnow() + timedelta(days=31)) == 1
    status, after, body = _read(scim, path)
    assert status == 200
    assert after not in seen
    assert "manager" not in body.get(ENTERPRISE, {})
    for old in seen:
        assert _read(scim, path, old)[0] == 200


def test_a_page_of_groups_reads_their_versions_in_one_query(client, db, tenant):
    """Five groups whose member was deleted, listed without members: one statement reads
    the versions' members' part for the page (by key), none reads a membership."""
    import sqlalchemy as sa

    scim = Scim(client, tenant)
    ada = _user(scim, "ada")
    for i in range(5):
        scim.create_group(f"G{i}", members=[ada])
    assert scim.delete(f"/Users/{ada}").status_code == 204
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        page = scim.get("/Groups?excludedAttributes=members").get_json()["Resources"]
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    assert [g["meta"]["version"] for g in page] == ['W/"1.1"'] * 5
    assert len([s for s in seen if "group_member_versions" in s]) == 1
    assert not [s for s in seen if "memberships" in s]
