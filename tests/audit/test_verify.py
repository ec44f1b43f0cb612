"""`verify` names the first changed, removed or reordered audit record, on both databases."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from app.audit.log import compute_hash
from app.audit.verify import verify, verify_chain
from app.models import AuditEvent
from tests.conftest import make_tenant, rows
from tests.lifecycle.support import roster

LOG_TABLES = ("audit_events", "audit_chain_heads", "audit_checkpoints")


@contextmanager
def attacker(db, dialect):
    """A connection with table-owner rights; on PostgreSQL the audit log's triggers (0004's,
    0034's and 0036's: append-only rows, no TRUNCATE, no chain head deleted) are off."""
    with db.engine.begin() as conn:
        if dialect == "postgresql":
            for table in LOG_TABLES:
                conn.execute(sa.text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        yield conn
        if dialect == "postgresql":
            for table in LOG_TABLES:
                conn.execute(sa.text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))


def rewrite_consistently(db, dialect, chain: str) -> None:
    """Edit the chain's first record and recompute every hash after it, and the head: what
    only a signed checkpoint can expose."""
    with db.transaction() as session:
        events = list(session.scalars(sa.select(AuditEvent).where(
            AuditEvent.chain == chain).order_by(AuditEvent.seq)))
        session.expunge_all()
    events[0].data = {**events[0].data, "rewritten": True}
    prev = events[0].prev_hash
    with attacker(db, dialect) as conn:
        for event in events:
            event.prev_hash = prev
            event.hash = prev = compute_hash(event)
            conn.execute(sa.text("UPDATE audit_events SET data = :d, prev_hash = :p, "
                                 "hash = :h WHERE id = :i"),
                         {"d": json.dumps(event.data), "p": event.prev_hash, "h": event.hash,
                          "i": event.id})
        conn.execute(sa.text("UPDATE audit_chain_heads SET hash = :h WHERE chain = :c"),
                     {"h": prev, "c": chain})


def _chain(db, tenant):
    return rows(db, "SELECT seq, event_id FROM audit_events WHERE chain = :c ORDER BY seq",
                c=tenant.org.id)


def _report(db, tenant):
    with db.transaction() as session:
        return verify_chain(session, tenant.org.id)


def test_untouched_chains_verify(db):
    """Every chain of a fresh deployment verifies."""
    make_tenant(db, "acme")
    make_tenant(db, "globex")
    with db.transaction() as session:
        reports = verify(session)
    assert len(reports) == 2
    assert all(r.ok for r in reports)


def test_changed_record_is_named(db, dialect, tenant):
    """Editing one record's content is reported at that record."""
    victim = _chain(db, tenant)[2]
    with attacker(db, dialect) as conn:
        conn.execute(sa.text("UPDATE audit_events SET actor_id = 'someone-else' "
                             "WHERE event_id = :e"), {"e": victim.event_id})
    report = _report(db, tenant)
    assert report.bad_seq == victim.seq
    assert report.bad_event_id == victim.event_id
    assert "changed" in report.problem


def test_removed_record_is_named(db, dialect, tenant):
    """Deleting a record in the middle is reported at the record after the gap."""
    chain = _chain(db, tenant)
    with attacker(db, dialect) as conn:
        conn.execute(sa.text("DELETE FROM audit_events WHERE event_id = :e"),
                     {"e": chain[1].event_id})
    report = _report(db, tenant)
    assert report.bad_seq == chain[2].seq
    assert "removed" in report.problem


def test_removed_last_record_is_detected_from_the_head(db, dialect, tenant):
    """Deleting the newest record is caught by comparing with the chain head."""
    chain = _chain(db, tenant)
    with attacker(db, dialect) as conn:
        conn.execute(sa.text("DELETE FROM audit_events WHERE event_id = :e"),
                     {"e": chain[-1].event_id})
    report = _report(db, tenant)
    assert report.bad_seq == chain[-1].seq
    assert "removed" in report.problem


def test_reordered_records_are_named(db, dialect, tenant):
    """Swapping two records' positions is reported at the first moved record."""
    chain = _chain(db, tenant)
    a, b = chain[1], chain[2]
    with attacker(db, dialect) as conn:
        conn.execute(sa.text("UPDATE audit_events SET seq = -1 WHERE event_id = :e"),
                     {"e": a.event_id})
        conn.execute(sa.text("UPDATE audit_events SET seq = :s WHERE event_id = :e"),
                     {"s": a.seq, "e": b.event_id})
        conn.execute(sa.text("UPDATE audit_events SET seq = :s WHERE event_id = :e"),
                     {"s": b.seq, "e": a.event_id})
    report = _report(db, tenant)
    assert report.bad_seq == a.seq
    assert report.bad_event_id == b.event_id


def test_rewriting_rows_is_rejected_on_postgresql_and_detected_on_sqlite(db, dialect, tenant):
    """PostgreSQL's trigger refuses UPDATE and DELETE; SQLite has none, so verify catches it."""
    victim = _chain(db, tenant)[0]
    statements = ["UPDATE audit_events SET action = 'x' WHERE event_id = :e",
                  "DELETE FROM audit_events WHERE event_id = :e"]
    if dialect == "postgresql":
        for statement in statements:
            with pytest.raises(sa.exc.DBAPIError, match="append-only"), db.engine.begin() as c:
                c.execute(sa.text(statement), {"e": victim.event_id})
        assert _report(db, tenant).ok
    else:
        with db.engine.begin() as conn:
            conn.execute(sa.text(statements[0]), {"e": victim.event_id})
        assert _report(db, tenant).bad_seq == victim.seq


TAMPERING = {
    "changed": ["UPDATE audit_events SET actor_id = 'someone-else' WHERE event_id = :b"],
    "removed": ["DELETE FROM audit_events WHERE event_id = :b"],
    "reordered": ["UPDATE audit_events SET seq = -1 WHERE event_id = :b",
                  "UPDATE audit_events SET seq = :bs WHERE event_id = :c",
                  "UPDATE audit_events SET seq = :cs WHERE event_id = :b"],
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_cli_verify_names_the_first_bad_record_and_exits_1(db, dialect, tenant, database_url,
                                                          case):
    """`roster audit verify --org acme`: exit 1 with the first bad seq and event id (the
    record after a gap for a removal); the other organization's chain still says ok."""
    make_tenant(db, "globex")
    chain = _chain(db, tenant)
    b, c = chain[1], chain[2]
    with attacker(db, dialect) as conn:
        for statement in TAMPERING[case]:
            conn.execute(sa.text(statement), {"b": b.event_id, "c": c.event_id,
                                              "bs": b.seq, "cs": c.seq})
    bad = c if case == "removed" else b
    shown = c if case == "reordered" else bad
    result = roster(database_url, "audit", "verify", "--org", "acme", ok=False)
    assert result.exit_code == 1
    assert f"BAD  chain {tenant.org.id}: first bad record at seq {bad.seq} " \
           f"(event {shown.event_id})" in result.output
    assert "ok   chain" in roster(database_url, "audit", "verify", "--org", "globex").output


def test_a_chain_removed_with_its_head_fails_the_verify_of_every_chain(db, dialect, tenant,
                                                                      database_url):
    """`roster audit verify` (no --org) checks every chain the database knows, not only
    those with a head: an organization's records and head deleted together, its signed
    checkpoint left, is BAD (exit 1), as `--org` already said."""
    make_tenant(db, "globex")
    roster(database_url, "audit", "checkpoint")
    with attacker(db, dialect) as conn:
        for table in ("audit_events", "audit_chain_heads"):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE chain = :c"), {"c": tenant.org.id})
    output = roster(database_url, "audit", "verify", ok=False).output
    # An organization's chain begins with its creation: one with no record is removed,
    # whatever its checkpoints say (test_verify_removed_log.py).
    assert f"BAD  chain {tenant.org.id}: first bad record at seq 1" in output
    assert "the whole log was removed" in output
    assert output.count("ok   chain") == 1  # globex's


def test_records_cut_off_the_end_with_the_head_removed_are_detected(db, dialect, tenant,
                                                                    database_url):
    """Deleting the newest record and the chain head (whose seq would expose it) leaves a
    chain without a head: BAD, with --org and without."""
    chain = _chain(db, tenant)
    with attacker(db, dialect) as conn:
        conn.execute(sa.text("DELETE FROM audit_events WHERE event_id = :e"),
                     {"e": chain[-1].event_id})
        conn.execute(sa.text("DELETE FROM audit_chain_heads WHERE chain = :c"),
                     {"c": tenant.org.id})
    report = _report(db, tenant)
    assert report.bad_seq == chain[-1].seq
    assert "no chain head" in report.problem
    for args in (("--org", "acme"), ()):
        output = roster(database_url, "audit", "verify", *args, ok=False).output
        assert f"BAD  chain {tenant.org.id}: first bad record at seq {chain[-1].seq}" in output
