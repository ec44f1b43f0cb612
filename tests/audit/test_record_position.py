"""Each deprovisioning record holds the id of the audit event naming it (``audit_id``),
written in the record's own transaction by every path that writes records; the record feed
(GET /api/v1/deprovisions) pages by it and lists only records whose position is an event
naming them."""

from __future__ import annotations

import sqlalchemy as sa

from app.audit import Actor
from app.audit.log import RECORD_ACTIONS
from app.lifecycle.users import Trigger, deprovision_user
from app.models import AuditEvent, User
from app.models.lifecycle import DeprovisionRecord
from tests.api.conftest import make_key
from tests.conftest import make_tenant, rows
from tests.lifecycle.support import add_user, disable, equip, roster
from tests.lifecycle.test_failed_deprovisioning import OKTA_OFF, _refused_once
from tests.scim.support import Scim


def _naming_events(db) -> dict[str, int]:
    """Record id -> id of the first audit event naming it."""
    with db.transaction(readonly=True) as session:
        found = session.execute(sa.select(AuditEvent.id, AuditEvent.data)
                                .where(AuditEvent.action.in_(RECORD_ACTIONS))
                                .order_by(AuditEvent.id)).all()
    named: dict[str, int] = {}
    for audit_id, data in found:
        named.setdefault(data["record_id"], audit_id)
    return named


def _positions(db) -> dict[str, int | None]:
    with db.transaction(readonly=True) as session:
        return dict(session.execute(sa.select(DeprovisionRecord.id,
                                              DeprovisionRecord.audit_id)).all())


def test_every_path_that_writes_a_record_gives_it_its_events_id(client, db):
    """A failed attempt (its own transaction after the rollback), the IdP's retry, an
    operator's deprovisioning, and a directory's disable (many records and events in one
    commit): each record's audit_id is the id of the event naming it."""
    tenant, scim, refused = _refused_once(client, db, "refused@acme.example")
    assert scim.patch(f"/Users/{refused}", OKTA_OFF).status_code == 200
    operator_id = add_user(db, tenant, "by-operator")
    with db.transaction() as session:
        deprovision_user(session, session.get(User, operator_id),
                         Actor(type="operator", id="security"), trigger=Trigger.operator)
    for name in ("disabled-1", "disabled-2", "disabled-3"):
        equip(db, tenant, Scim(client, tenant).create_user(f"{name}@acme.example")["id"],
              name=name)
    with db.transaction() as session:
        disable(session, tenant)
    positions = _positions(db)
    assert len(positions) == 6, positions
    assert positions == _naming_events(db)
    outcomes = rows(db, "SELECT outcome FROM deprovision_records ORDER BY outcome")
    assert [row.outcome for row in outcomes] == ["applied"] * 5 + ["failed"]


def test_a_record_whose_position_is_not_its_event_is_not_listed(client, db, database_url):
    """A position moved by hand onto an event that names no record (as a record no event
    names, written outside Roster): the feed leaves the record out, as it did when it found
    positions by joining the log, and the others are listed in commit order; ``roster
    audit verify`` names the record and its event's id."""
    tenant = make_tenant(db, "acme")
    ids = []
    for name in ("first", "second", "third"):
        user_id = add_user(db, tenant, name)
        with db.transaction() as session:
            rec = deprovision_user(session, session.get(User, user_id),
                                   Actor(type="operator", id="security"),
                                   trigger=Trigger.operator)
            ids.append(rec.id)
    auditor = make_key(db, "auditor", tenant.org)
    listed = client.get("/api/v1/deprovisions", headers=auditor.headers).get_json()["items"]
    assert [item["id"] for item in listed] == ids
    with db.engine.begin() as conn:
        other = conn.scalar(sa.text("SELECT min(id) FROM audit_events"))
        conn.execute(sa.text("UPDATE deprovision_records SET audit_id = :a WHERE id = :r"),
                     {"a": other, "r": ids[1]})
    listed = client.get("/api/v1/deprovisions", headers=auditor.headers).get_json()["items"]
    assert [item["id"] for item in listed] == [ids[0], ids[2]]
    output = roster(database_url, "audit", "verify", "--org", "acme", ok=False).output
    assert f"BAD  deprovisioning record {ids[1]} (audit event " in output
    assert f"the record's position in the log (audit_id) is {other}, the audit event" in output
    assert f"BAD  deprovisioning record {ids[0]}" not in output


def test_a_record_without_a_position_is_named_by_verify(client, db, database_url):
    """A record without audit_id (as a process of a release before migration 0036 writes
    one after the upgrade): not listed, and ``roster audit verify`` says it holds none."""
    tenant = make_tenant(db, "acme")
    user_id = add_user(db, tenant, "leaver")
    with db.transaction() as session:
        rec_id = deprovision_user(session, session.get(User, user_id),
                                  Actor(type="operator", id="security"),
                                  trigger=Trigger.operator).id
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE deprovision_records SET audit_id = NULL"))
    auditor = make_key(db, "auditor", tenant.org)
    assert client.get("/api/v1/deprovisions", headers=auditor.headers).get_json()["items"] == []
    output = roster(database_url, "audit", "verify", "--org", "acme", ok=False).output
    assert f"BAD  deprovisioning record {rec_id} (audit event " in output
    assert "holds no position in the log (audit_id)" in output
