"""An organization whose whole audit log was removed (its records, its chain head and its
checkpoints: a ``DELETE`` or a ``TRUNCATE``, by whoever can disable PostgreSQL's triggers)
fails the check, and so does a log begun anew after that: every organization's chain
begins with its ``organization:create`` record, written in the transaction that creates
it."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from app.audit.log import hash_fields
from app.audit.verify import verify
from app.models import AuditEvent
from tests.api.conftest import make_key
from tests.audit.test_verify import attacker
from tests.lifecycle.support import roster


def _remove_whole_log(db, dialect, org_id: str) -> None:
    """What an attacker with table-owner rights does to erase one organization's log."""
    with attacker(db, dialect) as conn:
        for table in ("audit_events", "audit_checkpoints", "audit_chain_heads"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE chain = :c"),
                         {"c": org_id})


def test_organization_whose_whole_log_was_removed_is_reported(db, dialect, tenant,
                                                              other_tenant, database_url,
                                                              client):
    """Records, head and checkpoints of one organization deleted: the CLI (one organization
    and all; exit 1), the API and ``verify`` call it removed; the other one stays ok."""
    auditor = make_key(db, "auditor", tenant.org)
    roster(database_url, "audit", "checkpoint")
    _remove_whole_log(db, dialect, tenant.org.id)
    result = roster(database_url, "audit", "verify", "--org", "acme", ok=False)
    assert f"BAD  chain {tenant.org.id}: first bad record at seq 1" in result.output
    assert "the whole log was removed" in result.output
    everything = roster(database_url, "audit", "verify", ok=False).output
    assert f"BAD  chain {tenant.org.id}" in everything
    assert f"ok   chain {other_tenant.org.id}" in everything
    with db.transaction() as session:
        reports = {r.chain: r for r in verify(session)}
    assert not reports[tenant.org.id].ok
    assert reports[other_tenant.org.id].ok
    answer = client.get("/api/v1/audit/verify", headers=auditor.headers).get_json()
    assert answer["ok"] is False, answer
    assert "the whole log was removed" in answer["broken"]["reason"]


def test_log_begun_anew_after_removal_is_reported(db, dialect, tenant, database_url, client):
    """After the removal Roster goes on appending (a new chain from the genesis hash, every
    hash valid): the check names seq 1, which is not the organization's creation."""
    auditor = make_key(db, "auditor", tenant.org)
    _remove_whole_log(db, dialect, tenant.org.id)
    make_key(db, "admin", tenant.org)  # any change: an api_key:create on the org's chain
    result = roster(database_url, "audit", "verify", "--org", "acme", ok=False)
    assert f"BAD  chain {tenant.org.id}: first bad record at seq 1" in result.output
    assert "not with the organization's organization:create" in result.output
    answer = client.get("/api/v1/audit/verify", headers=auditor.headers).get_json()
    assert answer["ok"] is False, answer
    assert answer["broken"]["seq"] == 1


def test_untouched_organization_chain_begins_with_its_creation(db, tenant, database_url):
    """An untouched organization verifies: its first record is its organization:create."""
    assert "ok   chain" in roster(database_url, "audit", "verify", "--org", "acme").output


def test_a_record_forged_beyond_the_head_is_named_by_the_cli(db, dialect, tenant,
                                                            database_url):
    """A record inserted by SQL after the last one, its hash linking correctly, the head
    left as it was: the CLI names that record's seq and calls it added (it named a seq
    after it, which no record has, and called it "records at the end were removed"), as
    ``GET /api/v1/audit/verify`` does."""
    with db.transaction() as session:
        last = session.scalars(sa.select(AuditEvent).where(
            AuditEvent.chain == tenant.org.id).order_by(AuditEvent.seq.desc()).limit(1)).one()
        forged = {name: getattr(last, name) for name in (
            "chain", "organization_id", "occurred_at", "actor_type", "actor_id",
            "subject_type", "subject_id", "request_id")}
    forged.update(event_id=str(uuid.uuid4()), seq=last.seq + 1, action="user:reactivate",
                  data={"forged": True}, prev_hash=last.hash)
    forged["hash"] = hash_fields(forged)
    with db.engine.begin() as conn:
        conn.execute(sa.insert(AuditEvent.__table__), [forged])
    result = roster(database_url, "audit", "verify", "--org", "acme", ok=False)
    assert f"first bad record at seq {last.seq + 1}:" in result.output
    assert "records were added outside Roster" in result.output
    with db.transaction() as session:
        [report] = verify(session, tenant.org.id)
    assert report.bad_seq == last.seq + 1


def test_truncated_log_tables_are_reported_for_every_organization(db, dialect, tenant,
                                                                  other_tenant, database_url):
    """``TRUNCATE`` of the log, its heads and checkpoints (PostgreSQL: refused since 0034,
    done here with the triggers disabled, as their owner can; SQLite: a DELETE of every
    row) leaves the organizations: each one is BAD (exit 1), none "ok, 0 records"."""
    roster(database_url, "audit", "checkpoint")
    with attacker(db, dialect) as conn:
        if dialect == "postgresql":
            conn.execute(sa.text("TRUNCATE audit_events, audit_chain_heads, "
                                 "audit_checkpoints"))
        else:
            for table in ("audit_events", "audit_chain_heads", "audit_checkpoints"):
                conn.execute(sa.text(f"DELETE FROM {table}"))
    output = roster(database_url, "audit", "verify", ok=False).output
    for org in (tenant.org, other_tenant.org):
        assert f"BAD  chain {org.id}: first bad record at seq 1" in output
    assert "ok   chain" not in output
