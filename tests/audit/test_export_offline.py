"""A security team checks a JSON Lines export offline, with the README's recipe only: each
hash recomputes, each record links to the one before, and a kept checkpoint anchors the end."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tests.api.conftest import make_key
from tests.lifecycle.support import make_leaver, roster

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
