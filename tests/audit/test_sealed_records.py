"""Deprovisioning records under the audit chain: a record changed, removed or added in the
database, where no audit event changed, fails `roster audit verify` (exit 1)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from app.models import Grant
from tests.api.conftest import make_key
from tests.conftest import rows
from tests.lifecycle.support import equip, roster
from tests.scim.support import PATCH_OP, Scim

OFF = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active",
                                               "value": False}]}
ON = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active",
                                              "value": True}]}


def _deprovisioned(client, db, tenant) -> str:
    """A SCIM user with grants (one with numbers in its parameters), sessions and tokens,
    deprovisioned by SCIM; returns its record's id."""
    scim = Scim(client, tenant)
    user_id = scim.create_user("leaver@acme.example")["id"]
    equip(db, tenant, user_id)
    with db.transaction() as session:
        grant = session.scalars(sa.select(Grant).where(Grant.user_id == user_id,
                                                       Grant.source == "manual")).one()
        # Numbers PostgreSQL's jsonb writes back in another notation (1e+17, -0.0, 2.50).
        grant.parameters = {"limit": 1e17, "zero": -0.0, "rate": 2.5, "n": 3,
                            "nested": [{"x": 1.0}]}
    response = scim.patch(f"/Users/{user_id}", OFF, headers={"X-Request-ID": "req-seal"})
    assert response.status_code == 200, response.get_json()
    [record] = rows(db, "SELECT id FROM deprovision_records WHERE user_id = :u", u=user_id)
    return record.id


TAMPERING = {
    "user_name": "UPDATE deprovision_records SET user_name = 'someone-else' WHERE id = :r",
    "actor": "UPDATE deprovision_records SET actor_id = 'operator' WHERE id = :r",
    "counts": "UPDATE deprovision_records SET sessions_revoked = 0 WHERE id = :r",
    "received_at": "UPDATE deprovision_records SET received_at = revocation_committed_at "
                   "WHERE id = :r",
    "state_before": "UPDATE deprovision_records SET state_before = state_after "
                    "WHERE id = :r",
    "outcome": "UPDATE deprovision_records SET outcome = 'failed', error = 'x' WHERE id = :r",
}


def test_a_deprovisioning_record_verifies_under_its_audit_event(client, db, tenant,
                                                                 database_url):
    """Untouched, the record matches the digest its user:deprovision event holds, also
    once its commit stamp is written and a reactivation marked it restored (after it)."""
    record_id = _deprovisioned(client, db, tenant)
    [event] = rows(db, "SELECT data FROM audit_events WHERE action = 'user:deprovision'")
    data = event.data if isinstance(event.data, dict) else json.loads(event.data)
    assert data["record_id"] == record_id
    assert len(data["record_digest"]) == 64
    user_id = rows(db, "SELECT user_id FROM deprovision_records")[0].user_id
    assert Scim(client, tenant).patch(f"/Users/{user_id}", ON).status_code == 200
    restored = rows(db, "SELECT restored_at, revocation_committed_at FROM "
                        "deprovision_records WHERE id = :r", r=record_id)[0]
    assert restored.restored_at is not None
    assert restored.revocation_committed_at is not None
    output = roster(database_url, "audit", "verify", "--org", "acme").output
    assert "ok   deprovisioning records: 1 records, 1 matching their audit event's digest" \
        in output, output


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_a_changed_record_fails_verify(client, db, tenant, database_url, case):
    """An UPDATE of a record's row: the chain is intact (ok), the record is BAD, exit 1."""
    record_id = _deprovisioned(client, db, tenant)
    with db.engine.begin() as conn:
        conn.execute(sa.text(TAMPERING[case]), {"r": record_id})
    output = roster(database_url, "audit", "verify", "--org", "acme", ok=False).output
    assert f"ok   chain {tenant.org.id}" in output
    assert f"BAD  deprovisioning record {record_id} (audit event " in output
    assert "it was changed" in output


def test_a_removed_record_fails_verify(client, db, tenant, database_url):
    """A DELETE of a record's row: its audit event still names it: BAD, exit 1."""
    record_id = _deprovisioned(client, db, tenant)
    with db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM deprovision_records WHERE id = :r"),
                     {"r": record_id})
    output = roster(database_url, "audit", "verify", ok=False).output
    assert f"BAD  deprovisioning record {record_id} (audit event " in output
    assert "it was removed" in output


def test_a_record_added_in_the_database_fails_verify(client, db, tenant, database_url):
    """A record inserted by SQL (a copy of a real one under new ids): no audit event names
    it: BAD, exit 1; the real one still verifies."""
    record_id = _deprovisioned(client, db, tenant)
    columns = [c["name"] for c in sa.inspect(db.engine).get_columns("deprovision_records")]
    # Its position in the log (audit_id) is unique: the copy holds none.
    fresh = {"id": "'forged-id'", "event_id": "'forged-event'", "audit_id": "NULL"}
    copied = ", ".join(fresh.get(c, c) for c in columns)
    with db.engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO deprovision_records ({', '.join(columns)}) "
                             f"SELECT {copied} FROM deprovision_records WHERE id = :r"),
                     {"r": record_id})
    output = roster(database_url, "audit", "verify", "--org", "acme", ok=False).output
    assert "BAD  deprovisioning record forged-id: no audit event names this record" in output
    assert f"BAD  deprovisioning record {record_id}" not in output


def test_a_failed_attempts_record_is_sealed_too(client, db, database_url):
    """A deprovisioning the database refused leaves a failed record (a new transaction)
    with a user:deprovision_failed event holding its digest: rewriting its error is BAD."""
    from tests.lifecycle.test_failed_deprovisioning import _refused_once

    _tenant, _scim, user_id = _refused_once(client, db, "leaver@acme.example")
    [record] = rows(db, "SELECT id, outcome FROM deprovision_records WHERE user_id = :u",
                    u=user_id)
    assert record.outcome == "failed"
    output = roster(database_url, "audit", "verify", "--org", "acme").output
    assert "ok   deprovisioning records: 1 records, 1 matching" in output
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE deprovision_records SET error = 'nothing happened' "
                             "WHERE id = :r"), {"r": record.id})
    output = roster(database_url, "audit", "verify", "--org", "acme", ok=False).output
    assert f"BAD  deprovisioning record {record.id} (audit event " in output


STAMP_TAMPERING = {
    "latency_ms": "UPDATE deprovision_records SET latency_ms = 1 WHERE id = :r",
    "revocation_committed_at": "UPDATE deprovision_records SET revocation_committed_at = "
                               "received_at WHERE id = :r",
    "stamp_removed": "UPDATE deprovision_records SET revocation_committed_at = NULL, "
                     "latency_ms = NULL WHERE id = :r",
    "restored_at": "UPDATE deprovision_records SET restored_at = applied_at WHERE id = :r",
}


@pytest.mark.parametrize("case", sorted(STAMP_TAMPERING))
def test_a_changed_stamp_fails_verify(client, db, tenant, database_url, case):
    """The fields written after the record's transaction (the commit stamp, a batch, a
    restore) are sealed by deprovision_record:stamp events: the commit stamp's event holds
    the values written; changing, adding or removing one is BAD (CLI exit 1, API not ok)."""
    record_id = _deprovisioned(client, db, tenant)
    [stamped] = rows(db, "SELECT revocation_committed_at, latency_ms FROM "
                         "deprovision_records WHERE id = :r", r=record_id)
    assert stamped.latency_ms is not None
    [event] = rows(db, "SELECT subject_type, subject_id, data FROM audit_events WHERE "
                       "action = 'deprovision_record:stamp'")
    data = event.data if isinstance(event.data, dict) else json.loads(event.data)
    assert (event.subject_type, event.subject_id) == ("deprovision_record", record_id)
    assert set(data["records"][record_id]) == {"revocation_committed_at", "latency_ms"}
    assert data["records"][record_id]["latency_ms"] == pytest.approx(stamped.latency_ms)
    assert "ok   deprovisioning records: 1 records" in roster(
        database_url, "audit", "verify", "--org", "acme").output
    with db.engine.begin() as conn:
        conn.execute(sa.text(STAMP_TAMPERING[case]), {"r": record_id})
    output = roster(database_url, "audit", "verify", "--org", "acme", ok=False).output
    assert f"ok   chain {tenant.org.id}" in output
    assert f"BAD  deprovisioning record {record_id} (audit event " in output
    assert "it was changed" in output
    admin = make_key(db, "admin", tenant.org)
    body = client.get("/api/v1/audit/verify", headers=admin.headers).json
    assert body["ok"] is False
    assert body["deprovisioning_records"]["problems"][0]["record_id"] == record_id


def test_a_restore_is_sealed_and_cannot_be_undone_in_the_database(client, db, tenant,
                                                                  database_url):
    """A reactivation stamps restored_at and seals it in its own transaction: the chain
    verifies; setting it back to NULL (hiding that access came back) is BAD."""
    record_id = _deprovisioned(client, db, tenant)
    user_id = rows(db, "SELECT user_id FROM deprovision_records")[0].user_id
    assert Scim(client, tenant).patch(f"/Users/{user_id}", ON).status_code == 200
    roster(database_url, "audit", "verify", "--org", "acme")
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE deprovision_records SET restored_at = NULL"))
    output = roster(database_url, "audit", "verify", "--org", "acme", ok=False).output
    assert f"BAD  deprovisioning record {record_id} (audit event " in output
    assert "restored_at is None" in output


def test_a_batch_is_sealed_for_every_record_it_took(client, db, tenant, database_url):
    """A mass deprovisioning over SCIM (6 of 20 users) opens a batch at the 5th and the 6th
    joins it: every record's batch_id is sealed (those of earlier transactions too), the
    batch restore seals their restored_at; all verify, and a record moved out of the batch
    in the database is BAD."""
    scim = Scim(client, tenant)
    ids = [scim.create_user(f"u{i}@acme.example", externalId=f"00u{i}")["id"]
           for i in range(20)]
    for user_id in ids[:6]:
        assert scim.patch(f"/Users/{user_id}", OFF).status_code == 200
    batched = rows(db, "SELECT id, batch_id FROM deprovision_records ORDER BY received_at")
    assert len({r.batch_id for r in batched}) == 1
    assert batched[0].batch_id is not None
    roster(database_url, "audit", "verify", "--org", "acme")
    roster(database_url, "lifecycle", "restore", "--batch", batched[0].batch_id)
    output = roster(database_url, "audit", "verify", "--org", "acme").output
    assert "ok   deprovisioning records: 6 records, 6 matching" in output
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE deprovision_records SET batch_id = NULL WHERE id = :r"),
                     {"r": batched[2].id})
    output = roster(database_url, "audit", "verify", "--org", "acme", ok=False).output
    assert f"BAD  deprovisioning record {batched[2].id}" in output
    assert "batch_id is None" in output
