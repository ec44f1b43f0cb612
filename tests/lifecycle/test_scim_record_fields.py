"""What a SCIM request puts in its deprovisioning record: the arrival time of the request
(the start of the latency) and the IdP dialect detected on it."""

from __future__ import annotations

from datetime import datetime

import pytest
from flask import g
from sqlalchemy import select

from app.db import utcnow
from app.models import AuditEvent
from app.models.lifecycle import DeprovisionRecord
from tests.api.conftest import make_key
from tests.conftest import make_tenant
from tests.lifecycle.support import equip
from tests.scim.support import PATCH_OP, Scim

# case -> (vendor, query string, body or None for DELETE, expected dialect)
CASES = {
    "okta_pathless": ("okta", "", [{"op": "replace", "value": {"active": False}}], "okta"),
    "entra_legacy": ("entra", "", [{"op": "Replace", "path": "active", "value": "False"}],
                     "entra-legacy"),
    "entra_compliant": ("entra", "?aadOptscim062020",
                        [{"op": "replace", "path": "active", "value": False}],
                        "entra-compliant"),
    "entra_compliant_delete": ("entra", "?aadOptscim062020", None, "entra-compliant"),
    # The flag as IBM's Maximo guide spells it (https://www.ibm.com/support/pages/node/7272019):
    # Entra takes it in any case and with a value; it was read as no flag at all.
    "entra_compliant_flag_spelled_otherwise": (
        "entra", "?aadOptSCIM062020=true", [{"op": "replace", "path": "active", "value": False}],
        "entra-compliant"),
    # Entra's SingleAppRoleAssignment mapping is named roles[primary eq "True"].value in both
    # dialects: that "True" is no sign of the legacy one (it made this request entra-legacy).
    "entra_compliant_app_role": (
        "entra", "?aadOptscim062020",
        [{"op": "replace", "path": "active", "value": False},
         {"op": "add", "path": 'roles[primary eq "True"].value', "value": "Admin"}],
        "entra-compliant"),
    "standard": ("okta", "", [{"op": "replace", "path": "active", "value": False}],
                 "standard"),
}


def _record(db, user_id: str) -> DeprovisionRecord:
    """The user's one record, read through the model (timezone-aware on both databases)."""
    with db.transaction() as session:
        [record] = session.scalars(select(DeprovisionRecord)
                                   .where(DeprovisionRecord.user_id == user_id)).all()
        return record


def _occurred(db, request_id: str) -> list[datetime]:
    with db.transaction() as session:
        return list(session.scalars(select(AuditEvent.occurred_at)
                                    .where(AuditEvent.request_id == request_id)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_record_has_the_request_arrival_time_and_dialect(app, client, db, case):
    """received_at is the moment request tracking saw the request (before any database
    work), the dialect comes from the request's notes, and latency_ms is committed minus
    received."""
    vendor, query, operations, dialect = CASES[case]
    tenant = make_tenant(db, "acme", vendor)
    scim = Scim(client, tenant)
    user_id = scim.create_user("leaver@acme.example")["id"]
    equip(db, tenant, user_id)
    before = utcnow()
    with client:
        if operations is None:
            response = scim.delete(f"/Users/{user_id}{query}",
                                   headers={"X-Request-ID": f"rf-{case}"})
        else:
            response = scim.patch(f"/Users/{user_id}{query}", {
                "schemas": [PATCH_OP], "Operations": operations},
                headers={"X-Request-ID": f"rf-{case}"})
        arrived = g.received_at
    after = utcnow()
    assert response.status_code in (200, 204), response.get_json()
    record = _record(db, user_id)
    received, applied = record.received_at, record.applied_at
    committed = record.revocation_committed_at
    assert received == arrived
    assert before <= received < applied <= committed <= after
    assert record.latency_ms == pytest.approx((committed - received).total_seconds() * 1000,
                                              abs=0.002)
    assert record.dialect == dialect
    # Every audit event of the request was written after the arrival stamp.
    occurred = _occurred(db, f"rf-{case}")
    assert occurred
    assert min(occurred) > received


def test_operator_api_record_starts_at_the_request_arrival(client, db, tenant, leaver):
    """The API route passes the arrival time too (no dialect: not an IdP)."""
    key = make_key(db, "operator")
    with client:
        response = client.post(f"/api/v1/users/{leaver.user_id}/deprovision",
                               headers=key.headers)
        arrived = g.received_at
    assert response.status_code == 201
    record = _record(db, leaver.user_id)
    assert record.received_at == arrived
    assert record.dialect is None
    assert record.latency_ms == pytest.approx(
        (record.revocation_committed_at - arrived).total_seconds() * 1000, abs=0.002)
