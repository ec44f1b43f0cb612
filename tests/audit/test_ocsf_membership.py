"""OCSF export of group-membership events: one Group Management (3006) event per member."""

from __future__ import annotations

import json

from tests.api.conftest import make_key
from tests.lifecycle.support import roster
from tests.scim.support import PATCH_OP, Scim


def _ocsf(lines: str) -> list[dict]:
    return [json.loads(line) for line in lines.splitlines()]


def test_membership_events_name_each_member_as_the_ocsf_user(client, db, tenant,
                                                             database_url):
    """A group created with two members and a PATCH removing one: the API's and the CLI's
    OCSF exports give one Group Management event per member (Add User 3 / Remove User 4),
    each with the member as ``user.uid`` (it was null), the group as ``group.uid``, its own
    ``metadata.uid``, and the audit record's id and hash in ``unmapped``."""
    scim = Scim(client, tenant)
    ada = scim.create_user("ada@acme.example")["id"]
    bob = scim.create_user("bob@acme.example")["id"]
    eng = scim.create_group("Engineering", [ada, bob])["id"]
    drop_ada = {"schemas": [PATCH_OP], "Operations": [
        {"op": "remove", "path": f'members[value eq "{ada}"]'}]}
    assert scim.patch(f"/Groups/{eng}", drop_ada).status_code in (200, 204)
    auditor = make_key(db, "auditor", tenant.org).headers
    api = client.get("/api/v1/audit/export?format=ocsf", headers=auditor)
    assert api.status_code == 200
    cli = roster(database_url, "audit", "export", "--format", "ocsf", "--org", "acme").output
    for events in (_ocsf(api.get_data(as_text=True)), _ocsf(cli)):
        groups = [e for e in events if e["unmapped"]["action"].startswith("membership:")]
        assert sorted((e["class_uid"], e["activity_id"], e["type_uid"], e["user"]["uid"])
                      for e in groups) == sorted([(3006, 3, 300603, ada),
                                                  (3006, 3, 300603, bob),
                                                  (3006, 4, 300604, ada)])
        assert {e["group"]["uid"] for e in groups} == {eng}
        assert len({e["metadata"]["uid"] for e in groups}) == 3
        added = [e for e in groups if e["activity_id"] == 3]
        assert added[0]["unmapped"]["event_id"] == added[1]["unmapped"]["event_id"]
        assert added[0]["unmapped"]["user_count"] == 2
        assert "user_ids" not in added[0]["unmapped"]["data"]
        assert all(e["class_name"] == "Group Management" for e in groups)
        # Every other event stays an Account Change with its user.
        users = [e for e in events if e["unmapped"]["action"] == "user:create"]
        assert {(e["class_uid"], e["user"]["uid"]) for e in users} == {(3001, ada),
                                                                       (3001, bob)}
    # One user's history holds only its own part of a group write.
    mine = client.get(f"/api/v1/audit/export?format=ocsf&subject_id={bob}", headers=auditor)
    groups = [e for e in _ocsf(mine.get_data(as_text=True))
              if e["unmapped"]["action"].startswith("membership:")]
    assert [(e["activity_id"], e["user"]["uid"]) for e in groups] == [(3, bob)]
    cli_mine = roster(database_url, "audit", "export", "--format", "ocsf", "--subject", ada)
    assert sorted((e["activity_id"], e["user"]["uid"]) for e in _ocsf(cli_mine.output)
                  if e["unmapped"]["action"].startswith("membership:")) == [(3, ada), (4, ada)]
    # The group's own history holds every member.
    group = client.get(f"/api/v1/audit/export?format=ocsf&subject_id={eng}", headers=auditor)
    assert len([e for e in _ocsf(group.get_data(as_text=True))
                if e["unmapped"]["action"].startswith("membership:")]) == 3


def test_ocsf_activity_names_are_the_captions_and_groups_are_group_management(
        client, db, tenant):
    """OCSF's ``activity_name`` is the caption its ``activity_id`` defines (it held Roster's
    tag, ``user:create``), Roster's tag moving to ``unmapped.action``; a group's creation,
    change and deletion are Group Management events (6 Create, 99 Other, 5 Delete) naming
    the group (they were Account Changes 99 with ``user.uid`` null)."""
    scim = Scim(client, tenant)
    ada = scim.create_user("ada@acme.example")["id"]
    eng = scim.create_group("Engineering", [])["id"]
    rename = {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "displayName", "value": "Platform"}]}
    assert scim.patch(f"/Groups/{eng}", rename).status_code in (200, 204)
    assert client.delete(f"/scim/v2/Groups/{eng}", headers=tenant.headers).status_code == 204
    auditor = make_key(db, "auditor", tenant.org).headers
    events = _ocsf(client.get("/api/v1/audit/export?format=ocsf",
                              headers=auditor).get_data(as_text=True))
    by_action = {e["unmapped"]["action"]: e for e in events}
    created = by_action["user:create"]
    assert (created["class_uid"], created["activity_id"], created["activity_name"],
            created["type_name"], created["user"]["uid"]) == (
        3001, 1, "Create", "Account Change: Create", ada)
    shapes = {action: (e["class_uid"], e["activity_id"], e["activity_name"], e["type_uid"],
                       e["group"]["uid"], "user" in e)
              for action, e in by_action.items() if action.startswith("group:")}
    assert shapes == {
        "group:create": (3006, 6, "Create", 300606, eng, False),
        "group:update": (3006, 99, "group:update", 300699, eng, False),
        "group:delete": (3006, 5, "Delete", 300605, eng, False)}
    assert by_action["group:create"]["group"]["name"] == "Engineering"
