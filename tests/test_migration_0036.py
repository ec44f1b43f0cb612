"""Migration 0036: deprovision_records.audit_id is filled in for the existing records (the
first event naming each, by the join the record feed ran), indexed, and the feed lists the
same records in the same order; on PostgreSQL a chain head row refuses DELETE. The
downgrade drops both."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa

from app.audit.record_feed import POSITION, records_by_position
from app.db import Database, UTCDateTime
from app.migrate import current_revision, downgrade, upgrade
from tests.conftest import make_tenant

_AT = datetime(2026, 1, 1, tzinfo=UTC)
_STAMP = sa.bindparam("at", type_=UTCDateTime())


def _record(conn: sa.Connection, org_id: str, user_id: str) -> str:
    record_id = str(uuid.uuid4())
    conn.execute(sa.text(
        "INSERT INTO deprovision_records (id, event_id, organization_id, user_id, scim_id, "
        "user_name, trigger, actor_type, received_at, applied_at, state_before, state_after, "
        "sessions_revoked, tokens_revoked, grants_removed, outcome) VALUES (:id, :e, :o, :u, "
        ":u, 'x', 'operator', 'operator', :at, :at, '{}', '{}', 0, 0, 0, 'applied')"
        ).bindparams(_STAMP),
        {"id": record_id, "e": str(uuid.uuid4()), "o": org_id, "u": user_id, "at": _AT})
    return record_id


def _event(conn: sa.Connection, org_id: str, seq: int, action: str, subject_id: str,
           data: str) -> int:
    conn.execute(sa.text(
        "INSERT INTO audit_events (event_id, chain, seq, organization_id, occurred_at, action, "
        "actor_type, subject_type, subject_id, data, prev_hash, hash) VALUES (:e, :o, :s, :o, "
        ":at, :a, 'operator', 'user', :u, :d, :h, :h)").bindparams(_STAMP),
        {"e": str(uuid.uuid4()), "o": org_id, "s": seq, "at": _AT, "a": action,
         "u": subject_id, "d": data, "h": "0" * 64})
    return conn.scalar(sa.text("SELECT max(id) FROM audit_events"))


def test_the_upgrade_fills_in_each_records_position(fresh_url):
    """Records written before 0036: each gets the id of the first event naming it (its
    action, its user, its organization and data.record_id); one named by no event, or only
    by an event about another user, stays NULL and unlisted; the feed's order is the
    events' order."""
    upgrade(fresh_url, "0034")
    db = Database(fresh_url)
    try:
        org_id = make_tenant(db, "acme").org.id
        with db.engine.begin() as conn:
            users = [str(uuid.uuid4()) for _ in range(4)]
            recs = [_record(conn, org_id, user) for user in users]
            seq = 1000
            ids = {}
            for index in (2, 0, 0, 1):  # the third record's event first; the first named twice
                seq += 1
                action = "user:deprovision_failed" if index == 1 else "user:deprovision"
                ids.setdefault(recs[index], _event(
                    conn, org_id, seq, action, users[index], f'{{"record_id": "{recs[index]}"}}'))
            _event(conn, org_id, seq + 1, "user:update", users[3],
                   f'{{"record_id": "{recs[3]}"}}')
            _event(conn, org_id, seq + 2, "user:deprovision", users[0],
                   f'{{"record_id": "{recs[3]}"}}')  # another user's subject
        upgrade(fresh_url, "0036")
        assert current_revision(db.engine) == "0036"
        with db.engine.connect() as conn:
            held = dict(conn.execute(sa.text("SELECT id, audit_id FROM deprovision_records")).all())
        assert held == {**ids, recs[3]: None}
        with db.transaction(readonly=True) as session:
            listed = [rec.id for rec, _ in session.execute(
                records_by_position(session, org_id).order_by(POSITION))]
        assert listed == [recs[2], recs[0], recs[1]]
        indexes = {ix["name"] for ix in sa.inspect(db.engine).get_indexes("deprovision_records")}
        assert {"ix_deprovision_records_organization_id_audit_id",
                "uq_deprovision_records_audit_id"} <= indexes
    finally:
        db.dispose()


def test_the_downgrade_drops_the_position_and_the_head_guard(fresh_url):
    """Down to 0034 (through 0035): no audit_id, and (PostgreSQL) a chain head can be deleted again;
    up again: both back."""
    upgrade(fresh_url)
    engine = sa.create_engine(fresh_url)
    try:
        for revision, present in (("0034", False), ("head", True)):
            if revision == "head":
                upgrade(fresh_url)
            else:
                downgrade(fresh_url, revision)
            columns = {c["name"] for c in sa.inspect(engine).get_columns("deprovision_records")}
            assert ("audit_id" in columns) is present
            if engine.dialect.name == "postgresql":
                with engine.connect() as conn:
                    names = set(conn.scalars(sa.text(
                        "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")))
                assert ("audit_chain_heads_no_delete" in names) is present
    finally:
        engine.dispose()
