"""Audit export (CSV, JSON Lines, OCSF 3001) and signed checkpoints."""

from __future__ import annotations

import csv
import io
import json

from app.lifecycle import Trigger, deprovision_user
from app.models import User
from tests.api.conftest import make_key
from tests.audit.test_verify import rewrite_consistently
from tests.conftest import OPERATOR, rows
from tests.lifecycle.support import make_leaver, roster


def _deprovision(db, tenant):
    leaver = make_leaver(db, tenant)
    with db.transaction() as session:
        deprovision_user(session, session.get(User, leaver.user_id), OPERATOR,
                         trigger=Trigger.operator)
    return leaver


def test_cli_exports_csv_with_every_event_of_the_org(db, tenant, other_tenant, database_url):
    """CSV has a header and one row per event of the organization, nothing of others."""
    _deprovision(db, tenant)
    out = roster(database_url, "audit", "export", "--format", "csv", "--org", "acme").output
    parsed = list(csv.DictReader(io.StringIO(out)))
    expected = rows(db, "SELECT event_id FROM audit_events WHERE organization_id = :o "
                        "ORDER BY id", o=tenant.org.id)
    assert [r["event_id"] for r in parsed] == [r.event_id for r in expected]
    assert "user:deprovision" in {r["action"] for r in parsed}


def test_ocsf_export_maps_deprovisioning_to_account_change_disable(db, tenant, database_url):
    """OCSF lines are class 3001; a deprovisioning is activity 5 (Disable) of the user."""
    leaver = _deprovision(db, tenant)
    out = roster(database_url, "audit", "export", "--format", "ocsf", "--org", "acme",
                 "--action", "user:deprovision").output
    events = [json.loads(line) for line in out.splitlines()]
    assert len(events) == 1
    assert (events[0]["class_uid"], events[0]["activity_id"], events[0]["type_uid"]) == (
        3001, 5, 300105)
    assert events[0]["user"]["uid"] == leaver.user_id


def test_api_export_streams_jsonl_scoped_to_the_key(client, db, tenant, other_tenant):
    """An org-bound auditor exports only its organization, even when asking for another."""
    _deprovision(db, tenant)
    auditor = make_key(db, "auditor", tenant.org)
    response = client.get("/api/v1/audit/export?format=jsonl", headers=auditor.headers)
    assert response.status_code == 200
    lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert lines
    assert {line["organization_id"] for line in lines} == {tenant.org.id}
    foreign = client.get(f"/api/v1/audit/export?organization={other_tenant.org.id}",
                         headers=auditor.headers)
    assert foreign.status_code == 404
    bad = client.get("/api/v1/audit/export?format=xml", headers=auditor.headers)
    assert bad.status_code == 400


def test_checkpoint_exposes_a_consistently_rewritten_chain(db, dialect, tenant, database_url):
    """Recomputing every hash after an edit fools the chain, but not the signed checkpoint."""
    roster(database_url, "audit", "checkpoint")
    assert "ok   chain" in roster(database_url, "audit", "verify", "--org", "acme").output
    rewrite_consistently(db, dialect, tenant.org.id)
    result = roster(database_url, "audit", "verify", "--org", "acme", ok=False)
    assert "the log was rewritten" in result.output


def test_subject_and_event_type_filters_over_the_api_and_the_cli(client, db, tenant,
                                                                 database_url):
    """subject_id (with an action) narrows GET /audit, the API export and
    `roster audit export --subject`, to one leaver's events; another leaver's stay out."""
    leaver = _deprovision(db, tenant)
    other = make_leaver(db, tenant, "other")
    with db.transaction() as session:
        deprovision_user(session, session.get(User, other.user_id), OPERATOR,
                         trigger=Trigger.operator)
    auditor = make_key(db, "auditor", tenant.org)
    listed = client.get(f"/api/v1/audit?subject_id={leaver.user_id}&limit=200",
                        headers=auditor.headers).get_json()["items"]
    assert {e["subject_id"] for e in listed} == {leaver.user_id}
    assert {"user:deprovision", "session:revoke"} <= {e["action"] for e in listed}
    one = client.get(f"/api/v1/audit?subject_id={leaver.user_id}&action=user:deprovision",
                     headers=auditor.headers).get_json()["items"]
    assert [(e["subject_id"], e["action"]) for e in one] == [(leaver.user_id,
                                                              "user:deprovision")]
    exported = client.get(f"/api/v1/audit/export?format=jsonl&subject_id={leaver.user_id}",
                          headers=auditor.headers).get_data(as_text=True)
    assert {json.loads(line)["subject_id"] for line in exported.splitlines()} == \
        {leaver.user_id}
    out = roster(database_url, "audit", "export", "--format", "jsonl", "--org", "acme",
                 "--subject", leaver.user_id).output
    assert {json.loads(line)["subject_id"] for line in out.splitlines()} == {leaver.user_id}
