"""Deprovisioning records under the audit chain: a record changed, removed or added in the
database, where no audit event changed, fails `roster audit verify` (exit 1)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from app.models import Grant
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
    copied = ", ".join("'forged-id'" if c == "id" else "'forged-event'" if c == "event_id"
                       else c for c in columns)
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
