"""GET /api/v1/audit/verify: an organization's audit chain checked over the API, as
`roster audit verify` checks it, in bounded stretches, within the key's organization."""

from __future__ import annotations

import sqlalchemy as sa

from tests.api.conftest import make_key
from tests.audit.test_verify import attacker
from tests.conftest import make_tenant, rows
from tests.lifecycle.support import roster
from tests.scim.support import PATCH_OP, Scim

OFF = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active",
                                               "value": False}]}


def _history(client, tenant) -> str:
    """A few SCIM writes and one deprovisioning; returns the user's id."""
    scim = Scim(client, tenant)
    ada = scim.create_user("ada@acme.example")["id"]
    scim.create_user("bob@acme.example", externalId="00u2")
    scim.create_group("Engineering", [ada])
    assert scim.patch(f"/Users/{ada}", OFF).status_code == 200
    return ada


def _head(db, tenant) -> int:
    [head] = rows(db, "SELECT seq FROM audit_chain_heads WHERE chain = :c", c=tenant.org.id)
    return head.seq


def test_an_untouched_chain_verifies(client, db, tenant):
    """An admin's (and an auditor's) check of its organization: every record, the head and
    the deprovisioning record, ok; the answer says how much it checked."""
    _history(client, tenant)
    for role in ("admin", "auditor"):
        key = make_key(db, role, tenant.org)
        head = _head(db, tenant)
        response = client.get("/api/v1/audit/verify", headers=key.headers)
        assert response.status_code == 200, response.json
        body = response.json
        assert body["ok"] is True, body
        assert body["complete"] is True
        assert body["broken"] is None
        assert body["next_after_seq"] is None
        assert body["events_checked"] == head == body["head_seq"] == body["last_seq"]
        assert body["organization_id"] == tenant.org.id
        records = body["deprovisioning_records"]
        assert (records["checked"], records["sealed"], records["problems"]) == (1, 1, [])


def test_a_changed_record_is_named_with_its_reason(client, db, tenant, dialect):
    """A record changed in the database: ok false, the first broken link is its seq and
    event, with the reason; the CLI names the same one."""
    _history(client, tenant)
    [victim] = rows(db, "SELECT id, seq, event_id FROM audit_events WHERE chain = :c AND "
                    "seq = 3", c=tenant.org.id)
    with attacker(db, dialect) as conn:
        conn.execute(sa.text("UPDATE audit_events SET actor_id = 'nobody' WHERE id = :i"),
                     {"i": victim.id})
    admin = make_key(db, "admin", tenant.org)
    body = client.get("/api/v1/audit/verify", headers=admin.headers).json
    assert body["ok"] is False
    assert body["broken"] == {"seq": 3, "event_id": victim.event_id, "reason":
                              "hash does not match the record's content: the record was "
                              "changed"}
    assert body["events_checked"] == 3
    assert body["next_after_seq"] is None


def test_a_changed_deprovisioning_record_fails_the_check(client, db, tenant, database_url):
    """A deprovisioning record edited in the database (the chain itself intact): not ok,
    the record named with its event."""
    _history(client, tenant)
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE deprovision_records SET user_name = 'someone-else'"))
    admin = make_key(db, "admin", tenant.org)
    body = client.get("/api/v1/audit/verify", headers=admin.headers).json
    assert body["ok"] is False
    assert body["broken"] is None
    records = body["deprovisioning_records"]
    assert records["problem_count"] == 1
    assert "it was changed" in records["problems"][0]["reason"]
    roster(database_url, "audit", "verify", "--org", "acme", ok=False)


def test_a_long_chain_is_checked_in_stretches(client, db, tenant, dialect):
    """limit bounds a stretch; next_after_seq continues it until complete, each stretch
    checking its share of the deprovisioning records (together: the one record, once); a
    record removed inside a later stretch is found there."""
    _history(client, tenant)
    admin = make_key(db, "admin", tenant.org)
    head = _head(db, tenant)
    after, seen, records = 0, 0, 0
    while True:
        body = client.get(f"/api/v1/audit/verify?limit=2&after_seq={after}",
                          headers=admin.headers).json
        assert body["ok"] is True, body
        seen += body["events_checked"]
        records += body["deprovisioning_records"]["checked"]
        assert body["deprovisioning_records"]["problems"] == []
        if body["complete"]:
            break
        assert body["events_checked"] == 2
        assert body["next_after_seq"] == after + 2
        after = body["next_after_seq"]
    assert seen == head
    assert records == 1
    with attacker(db, dialect) as conn:
        conn.execute(sa.text("DELETE FROM audit_events WHERE chain = :c AND seq = 4"),
                     {"c": tenant.org.id})
    body = client.get("/api/v1/audit/verify?limit=2&after_seq=2", headers=admin.headers).json
    assert body["ok"] is False
    assert body["broken"]["seq"] == 5
    assert "record(s) 4..4 were removed" in body["broken"]["reason"]
    body = client.get("/api/v1/audit/verify?limit=2&after_seq=4", headers=admin.headers).json
    assert body["ok"] is False
    assert "no record at seq 4" in body["broken"]["reason"]


def test_records_cut_off_the_end_or_added_beyond_the_head_fail(client, db, tenant, dialect):
    """The last stretch compares the head: the newest record removed, or a forged one
    appended beyond the head, is found."""
    _history(client, tenant)
    admin = make_key(db, "admin", tenant.org)
    head = _head(db, tenant)
    with attacker(db, dialect) as conn:
        conn.execute(sa.text("UPDATE audit_chain_heads SET seq = seq - 1, hash = (SELECT "
                             "hash FROM audit_events WHERE chain = :c AND seq = :s - 1) "
                             "WHERE chain = :c"), {"c": tenant.org.id, "s": head})
    body = client.get("/api/v1/audit/verify", headers=admin.headers).json
    assert body["ok"] is False
    assert body["events_checked"] == head - 1
    assert f"records up to seq {head} beyond its chain head" in body["broken"]["reason"]
    with attacker(db, dialect) as conn:
        conn.execute(sa.text("UPDATE audit_chain_heads SET seq = :s WHERE chain = :c"),
                     {"c": tenant.org.id, "s": head})
        conn.execute(sa.text("DELETE FROM audit_events WHERE chain = :c AND seq = :s"),
                     {"c": tenant.org.id, "s": head})
    body = client.get("/api/v1/audit/verify", headers=admin.headers).json
    assert body["ok"] is False
    assert "records at the end were removed" in body["broken"]["reason"]


def test_the_check_is_scoped_to_the_keys_organization(client, db, tenant):
    """Another organization's chain is a 404 to an org-bound key; an operator names one
    (400 problem without it); the portal's key may not check (403); bad input is a 400."""
    other = make_tenant(db, "globex")
    _history(client, tenant)
    admin = make_key(db, "admin", tenant.org)
    response = client.get("/api/v1/audit/verify?organization=globex", headers=admin.headers)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/problem+json")
    operator = make_key(db, "operator")
    response = client.get("/api/v1/audit/verify", headers=operator.headers)
    assert response.status_code == 400
    assert response.json["status"] == 400
    body = client.get("/api/v1/audit/verify?organization=globex",
                      headers=operator.headers).json
    assert body["ok"] is True
    assert body["organization_id"] == other.org.id
    body = client.get("/api/v1/audit/verify?organization=acme", headers=operator.headers).json
    assert body["ok"] is True
    assert body["events_checked"] == _head(db, tenant)
    portal = make_key(db, "portal", tenant.org)
    assert client.get("/api/v1/audit/verify", headers=portal.headers).status_code == 403
    assert client.get("/api/v1/audit/verify").status_code == 401
    for query in ("limit=0", "limit=100001", "after_seq=-1", "after_seq=x", "after_seq=999",
                  "nope=1"):
        response = client.get(f"/api/v1/audit/verify?{query}", headers=admin.headers)
        assert response.status_code == 400, (query, response.json)
        assert response.headers["Content-Type"].startswith("application/problem+json")
