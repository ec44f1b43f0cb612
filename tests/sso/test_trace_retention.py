"""``sso.trace_retention_days`` governs the failed-login traces already stored, as the README
says ("traces past sso.trace_retention_days"): each trace's expiry used to be fixed when it
was written, so a shortened retention left the stored traces for the old period (listed,
shown by correlation id, kept by the purge) and a lengthened one deleted them early."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import sqlalchemy as sa

from app.db import new_id, utcnow
from app.models.sso import LoginTrace
from tests.api.conftest import make_key
from tests.conftest import rows
from tests.lifecycle.support import roster
from tests.sso import forge
from tests.sso.conftest import post_response, saml_connection


def _refused(web, conn) -> str:
    """A refused login through the ACS; its correlation id."""
    page = post_response(web, conn, forge.b64("<junk"))
    return re.search(r"id=correlation-id>([^<]+)<", page.text).group(1)


def _written_ago(db, trace_id: str, days: int) -> None:
    with db.engine.begin() as conn:
        conn.execute(sa.update(LoginTrace).where(LoginTrace.id == trace_id)
                     .values(created_at=utcnow() - timedelta(days=days)))


def _left(db) -> list[str]:
    return sorted(r.id for r in rows(db, "SELECT id FROM sso_login_traces"))


def test_a_shortened_retention_expires_the_traces_already_stored(
        db, tenant, keys, web, sso_app, database_url, monkeypatch):
    """Traces written 10 and 2 days ago under the default 30 days; the retention lowered to
    7: the API lists and shows only the 2-day-old one (its expires_at 7 days after it was
    written), `roster sso traces` too, and `roster worker` deletes the other."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    old, recent = _refused(web, conn), _refused(web, conn)
    _written_ago(db, old, 10)
    _written_ago(db, recent, 2)
    monkeypatch.setitem(sso_app.config["ROSTER"]["sso"], "trace_retention_days", 7)
    auditor = make_key(db, "auditor", tenant.org)
    base = f"/api/v1/orgs/{tenant.org.id}/sso/traces"
    listing = web.get(base, headers=auditor.headers)
    assert [t["id"] for t in listing.get_json()["items"]] == [recent], listing.text
    assert web.get(f"{base}/{old}", headers=auditor.headers).status_code == 404
    shown = web.get(f"{base}/{recent}", headers=auditor.headers).get_json()
    with db.transaction() as session:
        written = session.get(LoginTrace, recent).created_at
    assert shown["expires_at"] == (written + timedelta(days=7)).isoformat()
    seven = {"ROSTER_SSO__TRACE_RETENTION_DAYS": "7"}
    listed = roster(database_url, "sso", "traces", "--org", "acme", "--json", **seven)
    assert [json.loads(line)["correlation_id"] for line in listed.output.splitlines()] == \
        [recent]
    roster(database_url, "worker", "--until-idle", **seven)
    assert _left(db) == [recent]


def test_a_lengthened_retention_keeps_traces_past_the_expiry_they_were_written_with(
        db, tenant, database_url):
    """A trace written 2 days ago while the retention was 1 day (before migration 0030 its
    expiry was fixed then; 0031 dropped that column): under the 30 days now configured it
    is listed and `roster sso purge-traces` keeps it; at 1 day it is deleted."""
    now = utcnow()
    trace_id = new_id()
    with db.transaction() as session:
        session.add(LoginTrace(id=trace_id, organization_id=tenant.org.id, protocol="saml",
                               reason="expired", detail="", payload={},
                               created_at=now - timedelta(days=2)))
    listed = roster(database_url, "sso", "traces", "--org", "acme", "--json")
    assert [json.loads(line)["correlation_id"] for line in listed.output.splitlines()] == \
        [trace_id]
    assert "0 trace(s) deleted" in roster(database_url, "sso", "purge-traces").output
    assert _left(db) == [trace_id]
    assert "1 trace(s) deleted" in roster(database_url, "sso", "purge-traces",
                                          ROSTER_SSO__TRACE_RETENTION_DAYS="1").output
    assert _left(db) == []
