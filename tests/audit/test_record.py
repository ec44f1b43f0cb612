"""The audit record function appends to a per-organization hash chain."""

from __future__ import annotations

import itertools

import sqlalchemy as sa
from sqlalchemy import select

from app.audit import compute_hash, record
from app.audit.log import GENESIS_HASH
from app.audit.verify import verify, verify_chain
from app.db import Database
from app.models import AuditEvent
from tests.conftest import OPERATOR, make_tenant, rows


def test_events_are_chained_per_organization(db):
    """Each event holds the previous hash of its own organization's chain, in sequence."""
    make_tenant(db, "acme")
    make_tenant(db, "globex")
    with db.transaction() as session:
        events = list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    chains: dict[str, list[AuditEvent]] = {}
    for event in events:
        chains.setdefault(event.chain, []).append(event)
    assert len(chains) == 2
    for chain in chains.values():
        assert chain[0].prev_hash == GENESIS_HASH
        assert [e.seq for e in chain] == list(range(1, len(chain) + 1))
        for prev, cur in itertools.pairwise(chain):
            assert cur.prev_hash == prev.hash
        for event in chain:
            assert compute_hash(event) == event.hash


def _count(session, org_id: str) -> int:
    return session.connection().execute(
        sa.text("SELECT count(*) FROM audit_events WHERE organization_id = :o"),
        {"o": org_id}).scalar()


def test_events_are_appended_when_the_transaction_commits(db):
    """record() takes the event at once but writes it, and locks its chain head, only at
    commit: the head of a busy organization is held for the append and the COMMIT alone."""
    tenant = make_tenant(db, "acme")
    with db.transaction() as session:
        before = _count(session, tenant.org.id)
        record(session, organization_id=tenant.org.id, action="test:one", actor=OPERATOR,
               subject_type="test", subject_id="1", data={"n": 1})
        record(session, organization_id=None, action="test:deployment", actor=OPERATOR,
               subject_type="test", subject_id="2")
        record(session, organization_id=tenant.org.id, action="test:two", actor=OPERATOR,
               subject_type="test", subject_id="3", data={"n": 2})
        assert _count(session, tenant.org.id) == before
    with db.transaction() as session:
        found = session.execute(select(AuditEvent.action, AuditEvent.seq).where(
            AuditEvent.chain == tenant.org.id).order_by(AuditEvent.seq)).all()
        reports = verify(session)
    assert [a for a, _ in found][-2:] == ["test:one", "test:two"]
    assert found[-1].seq == found[-2].seq + 1 == before + 2
    assert all(r.problem is None for r in reports), reports


def test_a_rolled_back_transaction_leaves_no_event_for_the_next_one(db):
    """A session that rolls back and carries on commits nothing of what it recorded before."""
    tenant = make_tenant(db, "acme")
    session = db.sessionmaker()
    try:
        with session.begin():
            before = _count(session, tenant.org.id)
        session.begin()
        record(session, organization_id=tenant.org.id, action="test:gone", actor=OPERATOR,
               subject_type="test", subject_id="1")
        session.rollback()
        with session.begin():
            record(session, organization_id=tenant.org.id, action="test:kept", actor=OPERATOR,
                   subject_type="test", subject_id="2")
    finally:
        session.close()
    actions = [r[0] for r in rows(db, "SELECT action FROM audit_events WHERE organization_id"
                                      " = :o ORDER BY seq", o=tenant.org.id)]
    assert len(actions) == before + 1
    assert actions[-1] == "test:kept"
    assert "test:gone" not in actions


def test_a_savepoint_rollback_drops_only_the_events_recorded_inside_it(db):
    """Events recorded before a savepoint keep their place; those inside a rolled-back
    savepoint are gone; the chain has no gap (the mapping's refusal path uses savepoints)."""
    tenant = make_tenant(db, "acme")
    with db.transaction() as session:
        record(session, organization_id=tenant.org.id, action="test:before", actor=OPERATOR,
               subject_type="test", subject_id="1")
        savepoint = session.begin_nested()
        record(session, organization_id=tenant.org.id, action="test:inside", actor=OPERATOR,
               subject_type="test", subject_id="2")
        savepoint.rollback()
        record(session, organization_id=tenant.org.id, action="test:after", actor=OPERATOR,
               subject_type="test", subject_id="3")
    with db.transaction() as session:
        actions = list(session.scalars(select(AuditEvent.action).where(
            AuditEvent.chain == tenant.org.id).order_by(AuditEvent.seq)))
        report = verify_chain(session, tenant.org.id)
    assert actions[-2:] == ["test:before", "test:after"]
    assert "test:inside" not in actions
    assert report.problem is None
    assert report.records == report.head_seq == len(actions)


def test_another_transaction_appends_while_one_with_pending_events_is_open(db):
    """Two transactions of one organization: the one that records first and commits last
    does not hold the chain head meanwhile (on PostgreSQL the second would wait for it;
    SQLite has one writer at a time anyway, so there the second runs after the first)."""
    tenant = make_tenant(db, "acme")
    if db.dialect != "postgresql":
        with db.transaction() as first:
            record(first, organization_id=tenant.org.id, action="test:first", actor=OPERATOR,
                   subject_type="test", subject_id="1")
        with db.transaction() as second:
            record(second, organization_id=tenant.org.id, action="test:second",
                   actor=OPERATOR, subject_type="test", subject_id="2")
    else:
        impatient = Database(db.url + ("&" if "?" in db.url else "?")
                             + "options=-c%20lock_timeout%3D2000")
        try:
            with db.transaction() as first:
                record(first, organization_id=tenant.org.id, action="test:first",
                       actor=OPERATOR, subject_type="test", subject_id="1")
                first.execute(sa.text("SELECT 1"))
                # Would time out on the head row if the first transaction had locked it.
                with impatient.transaction() as second:
                    record(second, organization_id=tenant.org.id, action="test:second",
                           actor=OPERATOR, subject_type="test", subject_id="2")
        finally:
            impatient.dispose()
    with db.transaction() as session:
        actions = list(session.scalars(select(AuditEvent.action).where(
            AuditEvent.chain == tenant.org.id).order_by(AuditEvent.seq)))
        report = verify_chain(session, tenant.org.id)
    expected = ["test:first", "test:second"] if db.dialect != "postgresql" else \
        ["test:second", "test:first"]
    assert actions[-2:] == expected
    assert report.problem is None


def test_the_event_keeps_its_data_as_recorded(db):
    """The append happens at commit, but a list the caller changes after record() is
    stored as it was when recorded."""
    tenant = make_tenant(db, "acme")
    user_ids = ["u1"]
    with db.transaction() as session:
        record(session, organization_id=tenant.org.id, action="test:data", actor=OPERATOR,
               subject_type="test", subject_id="1", data={"user_ids": user_ids})
        user_ids.append("u2")
    with db.transaction() as session:
        stored = session.scalar(select(AuditEvent.data).where(AuditEvent.action == "test:data"))
    assert stored == {"user_ids": ["u1"]}


def test_events_with_any_json_numbers_verify(db):
    """A record's data is read back as serialised, so its hash still matches: floats of
    1e16 and more (written with an exponent), -0.0, tiny floats and big integers, which
    PostgreSQL's jsonb would have given back in another notation."""
    tenant = make_tenant(db, "acme")
    data = {"n": 1e17, "f": 2.0**55, "z": -0.0, "tiny": 1e-7, "big": 2**70, "x": 1.5,
            "nested": [{"v": 3.602879701896397e16}], "s": "é\u2028"}
    with db.transaction() as session:
        record(session, organization_id=tenant.org.id, action="test:numbers", actor=OPERATOR,
               subject_type="test", subject_id="1", data=data)
    with db.transaction() as session:
        report = verify_chain(session, tenant.org.id)
        stored = session.scalar(select(AuditEvent.data).where(AuditEvent.action == "test:numbers"))
    assert report.ok, report
    assert repr(stored) == repr(data)


def test_a_single_event_moves_its_head_in_the_same_statement_on_postgresql(db):
    """One event in a unit of work: on PostgreSQL the head's UPDATE rides in the event's
    INSERT (a data-modifying WITH, one round trip); on SQLite they are two statements.
    Either way the head ends at the event's sequence number and hash, and the chain
    verifies."""
    tenant = make_tenant(db, "acme")
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_rest):
        statements.append(" ".join(statement.split()))

    sa.event.listen(db.engine, "before_cursor_execute", seen)
    try:
        with db.transaction() as session:
            record(session, organization_id=tenant.org.id, action="test:single",
                   actor=OPERATOR, subject_type="test", subject_id="1")
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", seen)
    writes = [s for s in statements if s.startswith(("UPDATE audit_chain_heads", "WITH",
                                                     "INSERT INTO audit_events"))]
    if db.dialect == "postgresql":
        assert len(writes) == 1
        assert writes[0].startswith("WITH moved_head AS (UPDATE audit_chain_heads SET")
        assert "INSERT INTO audit_events" in writes[0]
    else:
        assert [s.split(" (")[0].split(" SET")[0] for s in writes] == [
            "UPDATE audit_chain_heads", "INSERT INTO audit_events"]
    with db.transaction() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "test:single")).one()
        report = verify_chain(session, tenant.org.id)
    assert rows(db, "SELECT seq, hash FROM audit_chain_heads WHERE chain = :c",
                c=tenant.org.id) == [(event.seq, event.hash)]
    assert report.ok, report
