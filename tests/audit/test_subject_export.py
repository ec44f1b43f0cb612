"""A user's audit history by subject (`roster audit export --subject`, the API's export and
list with ``subject_id``): every event about the user, the grants it lost and got back too."""

from __future__ import annotations

import json

from app.audit import Actor, record
from tests.api.conftest import make_key
from tests.lifecycle.support import equip, roster
from tests.scim.support import PATCH_OP, Scim

OFF = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active",
                                               "value": False}]}
ON = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active",
                                              "value": True}]}


def _leaver_out_and_back(client, db, tenant) -> str:
    """A SCIM user with a manual and a rule grant, deprovisioned then reactivated by SCIM
    (the reactivation gives back the manual grant)."""
    scim = Scim(client, tenant)
    user_id = scim.create_user("leaver@acme.example")["id"]
    equip(db, tenant, user_id)
    assert scim.patch(f"/Users/{user_id}", OFF).status_code == 200
    assert scim.patch(f"/Users/{user_id}", ON).status_code == 200
    return user_id


def _grant_events(events: list[dict]) -> list[tuple[str, str]]:
    return sorted((e["action"], e["data"]["reason"]) for e in events
                  if e["action"].startswith("grant:"))


EXPECTED = [("grant:add", "reactivated"), ("grant:remove", "deprovisioned"),
            ("grant:remove", "deprovisioned")]


def test_a_users_export_holds_the_grants_it_lost_and_got_back(client, db, tenant,
                                                              database_url):
    """`roster audit export --subject USER`: the deprovisioning's two grant:remove and the
    reactivation's grant:add are there (they were recorded under the grant, and missing),
    each naming its grant; the chain still verifies."""
    user_id = _leaver_out_and_back(client, db, tenant)
    output = roster(database_url, "audit", "export", "--subject", user_id).output
    events = [json.loads(line) for line in output.splitlines()]
    assert {"user:deprovision", "user:reactivate"} <= {e["action"] for e in events}
    assert _grant_events(events) == EXPECTED
    grants = [e for e in events if e["action"].startswith("grant:")]
    # Recorded as the mapping's grant events are: the user the subject, the grant named.
    assert {(e["subject_type"], e["subject_id"], e["data"]["user_id"]) for e in grants} == {
        ("user", user_id, user_id)}
    assert all(e["data"]["grant_id"] for e in grants)
    assert "ok   chain" in roster(database_url, "audit", "verify", "--org", "acme").output


def test_the_apis_export_and_list_by_subject_hold_the_users_grant_events(client, db,
                                                                         tenant):
    """GET /api/v1/audit/export?subject_id= and /api/v1/audit?subject_id= (alone, and with
    subject_type=user) hold the same grant events."""
    user_id = _leaver_out_and_back(client, db, tenant)
    auditor = make_key(db, "auditor", tenant.org).headers
    response = client.get(f"/api/v1/audit/export?format=jsonl&subject_id={user_id}",
                          headers=auditor)
    assert response.status_code == 200
    exported = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert _grant_events(exported) == EXPECTED
    for query in (f"subject_id={user_id}", f"subject_type=user&subject_id={user_id}"):
        listed = client.get(f"/api/v1/audit?{query}&limit=100", headers=auditor)
        assert listed.status_code == 200, listed.json
        assert _grant_events(listed.json["items"]) == EXPECTED, query


def test_grant_events_recorded_under_the_grant_are_in_the_users_export(client, db, tenant,
                                                                       database_url):
    """A grant:remove as releases before recorded it (subject the grant, the user in its
    data) is exported with the user's history, unchanged; the chain verifies. Another
    user's is not, nor is an event whose subject id only happens to be that user's id."""
    actor = Actor(type="operator", id="test")
    with db.transaction() as session:
        for user_id, grant_id in (("u-1", "g-1"), ("u-2", "g-2")):
            record(session, organization_id=tenant.org.id, action="grant:remove",
                   actor=actor, subject_type="grant", subject_id=grant_id,
                   data={"user_id": user_id, "reason": "deprovisioned"})
    output = roster(database_url, "audit", "export", "--subject", "u-1").output
    events = [json.loads(line) for line in output.splitlines()]
    assert [(e["subject_type"], e["subject_id"]) for e in events] == [("grant", "g-1")]
    auditor = make_key(db, "auditor", tenant.org).headers
    listed = client.get("/api/v1/audit?subject_type=user&subject_id=u-1", headers=auditor)
    assert [e["subject_id"] for e in listed.json["items"]] == ["g-1"]
    exact = client.get("/api/v1/audit?subject_type=grant&subject_id=u-1", headers=auditor)
    assert exact.json["items"] == []
    assert "ok   chain" in roster(database_url, "audit", "verify", "--org", "acme").output


def _membership_events(events: list[dict]) -> list[tuple[str, str, list[str]]]:
    return sorted((e["action"], e["subject_id"], e["data"]["user_ids"]) for e in events
                  if e["action"].startswith("membership:"))


def test_a_users_export_holds_its_group_changes(client, db, tenant, database_url):
    """A user's export (CLI --subject, the API's export and list by subject_id, alone and
    with subject_type=user) holds the membership:add / membership:remove events that name it
    a member (recorded under the group, one per group write whatever the number of members);
    not those of a group write naming other users only. The chain verifies."""
    scim = Scim(client, tenant)
    ada = scim.create_user("ada@acme.example")["id"]
    bob = scim.create_user("bob@acme.example", externalId="00u2")["id"]
    eng = scim.create_group("Engineering", [ada, bob])["id"]
    ops = scim.create_group("Ops")["id"]
    add_bob = {"schemas": [PATCH_OP], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": bob}]}]}
    assert scim.patch(f"/Groups/{ops}", add_bob).status_code in (200, 204)
    drop_ada = {"schemas": [PATCH_OP], "Operations": [
        {"op": "remove", "path": f'members[value eq "{ada}"]'}]}
    assert scim.patch(f"/Groups/{eng}", drop_ada).status_code in (200, 204)
    expected = [("membership:add", eng, sorted([ada, bob])),
                ("membership:remove", eng, [ada])]
    output = roster(database_url, "audit", "export", "--subject", ada).output
    events = [json.loads(line) for line in output.splitlines()]
    assert [(a, s, sorted(u)) for a, s, u in _membership_events(events)] == expected
    auditor = make_key(db, "auditor", tenant.org).headers
    response = client.get(f"/api/v1/audit/export?format=csv&subject_id={ada}",
                          headers=auditor)
    assert response.status_code == 200
    assert response.get_data(as_text=True).count("membership:") == 2
    for query in (f"subject_id={ada}", f"subject_type=user&subject_id={ada}"):
        listed = client.get(f"/api/v1/audit?{query}&limit=100", headers=auditor)
        assert listed.status_code == 200, listed.json
        found = _membership_events(listed.json["items"])
        assert [(a, s, sorted(u)) for a, s, u in found] == expected, query
    bobs = [json.loads(line) for line in
            roster(database_url, "audit", "export", "--subject", bob).output.splitlines()]
    assert [(a, s) for a, s, _u in _membership_events(bobs)] == sorted([
        ("membership:add", eng), ("membership:add", ops)])
    exact = client.get(f"/api/v1/audit?subject_type=group&subject_id={ada}",
                       headers=auditor)
    assert exact.json["items"] == []
    assert "ok   chain" in roster(database_url, "audit", "verify", "--org", "acme").output
