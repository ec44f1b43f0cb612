"""A security team checks a JSON Lines export offline, with the README's recipe only: each
hash recomputes, each record links to the one before, and a kept checkpoint anchors the end."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import timedelta
from typing import Any

from app.db import utcnow
from app.directory.organizations import add_unit
from app.models import Organization
from tests.api.conftest import make_key
from tests.conftest import OPERATOR
from tests.lifecycle.support import make_leaver, roster
from tests.lockwait import in_flight

GENESIS = "0" * 64


def readme_problem(records: list[dict[str, Any]], prev_hash: str = GENESIS,
                   first_seq: int = 1) -> str | None:
    """README, Audit log: `hash` is the SHA-256 (hex) of the record's other fields as JSON,
    keys sorted, no whitespace, non-ASCII escaped; `prev_hash` the previous record's."""
    for expected_seq, record in enumerate(records, start=first_seq):
        fields = {name: value for name, value in record.items() if name != "hash"}
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        if record["seq"] != expected_seq:
            return f"seq {expected_seq} missing"
        if hashlib.sha256(canonical.encode()).hexdigest() != record["hash"]:
            return f"seq {expected_seq} changed"
        if record["prev_hash"] != prev_hash:
            return f"seq {expected_seq} not linked"
        prev_hash = record["hash"]
    return None


def _export(client, headers, query: str = "") -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/audit/export?format=jsonl{query}", headers=headers)
    assert response.status_code == 200
    return [json.loads(line) for line in response.get_data(as_text=True).splitlines()]


def test_an_export_verifies_offline_and_exposes_changes_and_a_cut_end(client, db, tenant,
                                                                      database_url):
    """The whole export of an organization (non-ASCII data included) verifies with the
    README's recipe; an edited, removed or reordered line fails it; an export cut before a
    kept checkpoint (the audit.checkpoint event) lacks the signed head; an export from
    `since` links to the earlier one's last hash."""
    make_leaver(db, tenant, "zoë-müller")
    roster(database_url, "lifecycle", "deprovision", "--org", "acme", "zoë-müller",
           "--reason", "départ, ticket RH-12")
    roster(database_url, "audit", "checkpoint")
    auditor = make_key(db, "auditor", tenant.org)
    records = _export(client, auditor.headers)
    assert any("ü" in json.dumps(r["data"], ensure_ascii=False) for r in records)
    assert readme_problem(records) is None

    edited = [dict(r) for r in records]
    edited[3]["actor_id"] = "someone-else"
    assert readme_problem(edited) == "seq 4 changed"
    assert readme_problem(records[:3] + records[4:]) == "seq 4 missing"
    swapped = [*records[:3], records[4], records[3], *records[5:]]
    assert readme_problem(swapped) == "seq 4 missing"

    portal = make_key(db, "portal", tenant.org)
    [kept] = client.get("/api/v1/events?type=audit.checkpoint",
                        headers=portal.headers).get_json()["items"]
    signed = kept["data"]["checkpoint"]
    def anchored(export: list[dict[str, Any]]) -> bool:
        return (signed["seq"], signed["hash"]) in {(r["seq"], r["hash"]) for r in export}

    cut = [r for r in records if r["seq"] < signed["seq"]]  # the end from the signed head on
    assert anchored(records)
    assert readme_problem(cut) is None  # a cut-off end still links...
    assert not anchored(cut)  # ...but lacks the signed head

    since = records[-3]["occurred_at"].replace("+00:00", "Z")
    later = _export(client, auditor.headers, f"&since={since}")
    earlier = [r for r in records if r["seq"] < later[0]["seq"]]
    assert readme_problem(later, earlier[-1]["hash"], later[0]["seq"]) is None


def test_an_incremental_export_by_seq_misses_no_record_committed_late(client, db, dialect,
                                                                      tenant, database_url):
    """A change made before an export's `until` and committed after that export ran is in
    neither that export nor the next one `since` that time (both select by occurred_at);
    `after_seq=` the previous export's last seq gets it, linked to that export's end. (On
    SQLite an API request waits for the writer, so the export sees the commit.)"""
    auditor = make_key(db, "auditor", tenant.org)
    operator = make_key(db, "operator")

    def late_change(session) -> None:
        org = session.get(Organization, tenant.org.id)
        add_unit(session, org, "Late unit", "department", None, OPERATOR)

    if dialect == "postgresql":
        with in_flight(db, late_change):  # recorded now, committed when the block ends
            boundary = utcnow() + timedelta(milliseconds=5)
            time.sleep(0.01)
            until = boundary.isoformat().replace("+00:00", "Z")
            first = _export(client, auditor.headers, f"&until={until}")
        assert "Late unit" not in json.dumps(first)
        window = _export(client, auditor.headers, f"&since={until}")
        assert "Late unit" not in json.dumps(window)  # missed by the windows
    else:
        first = _export(client, auditor.headers)
        with db.transaction() as session:
            late_change(session)
    rest = _export(client, auditor.headers, f"&after_seq={first[-1]['seq']}")
    assert [r["data"].get("path") for r in rest if r["action"] == "unit:create"] == [
        "Late unit"]
    assert rest[0]["seq"] == first[-1]["seq"] + 1
    assert readme_problem(rest, first[-1]["hash"], rest[0]["seq"]) is None
    assert readme_problem(first + rest) is None

    unbound = client.get("/api/v1/audit/export?after_seq=1", headers=operator.headers)
    assert unbound.status_code == 400
    assert unbound.get_json()["errors"][0]["field"] == "after_seq"
    out = roster(database_url, "audit", "export", "--org", "acme", "--after-seq",
                 str(first[-1]["seq"])).output
    assert [json.loads(line)["event_id"] for line in out.splitlines()] == [
        r["event_id"] for r in rest]
    refused = roster(database_url, "audit", "export", "--after-seq", "1", ok=False)
    assert "--after-seq needs --org" in refused.output
