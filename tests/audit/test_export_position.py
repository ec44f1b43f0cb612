"""Incremental audit export by position (`after_id`, `Roster-Audit-Position`,
`roster audit export --position-file`), across organizations too: no record is missed,
also one committed after a later one of another organization (PostgreSQL)."""

from __future__ import annotations

import json

from tests.api.conftest import make_key
from tests.audit.test_operator_cursor import _record, read_racing_a_slow_commit
from tests.lifecycle.support import roster

HEADER = "Roster-Audit-Position"


def _export(client, headers, query: str = "") -> tuple[list[dict], int]:
    response = client.get(f"/api/v1/audit/export?format=jsonl{query}",
                          headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    records = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    return records, int(response.headers[HEADER])


def _names(records: list[dict]) -> list[str]:
    return [r["subject_id"] for r in records if r["action"].startswith("test:")]


def test_exports_on_from_the_position_across_organizations(client, db, tenant, other_tenant):
    """An operator's export across organizations gives its position; the next export from it
    (`after_id`) holds exactly the records committed since, of every organization."""
    operator = make_key(db, "operator")
    _record(db, tenant.org.id, "a1")
    _record(db, other_tenant.org.id, "b1")
    first, at = _export(client, operator.headers)
    assert _names(first) == ["a1", "b1"]
    _record(db, other_tenant.org.id, "b2")
    _record(db, tenant.org.id, "a2")
    rest, then = _export(client, operator.headers, f"&after_id={at}")
    assert _names(rest) == ["b2", "a2"]
    assert then > at
    nothing, still = _export(client, operator.headers, f"&after_id={then}")
    assert (nothing, still) == ([], then)


def test_a_record_committed_after_a_later_one_is_in_an_export(client, db, tenant,
                                                              other_tenant):
    """PostgreSQL: acme's record takes id n and is still committing while globex's n+1 is
    visible. An export that ended its position at n+1 would leave n out of this export
    and of the next. It waits for the commit instead (taking no lock: appends go on)."""
    operator = make_key(db, "operator")
    reader = client.application.test_client()
    outcome = read_racing_a_slow_commit(db, lambda: _export(reader, operator.headers),
                                        tenant.org.id, other_tenant.org.id)
    assert not isinstance(outcome, BaseException), outcome
    first, at = outcome
    rest, _ = _export(client, operator.headers, f"&after_id={at}")
    assert _names(first + rest) == ["slow", "fast", "later"]


def test_an_organization_key_exports_on_from_its_own_position(client, db, tenant,
                                                              other_tenant):
    """An organization's key sees its own records only; its position moves with them, and
    another organization's records neither appear nor are skipped into."""
    auditor = make_key(db, "auditor", tenant.org)
    _record(db, tenant.org.id, "a1")
    _record(db, other_tenant.org.id, "b1")
    first, at = _export(client, auditor.headers)
    assert _names(first) == ["a1"]
    _record(db, other_tenant.org.id, "b2")
    _record(db, tenant.org.id, "a2")
    rest, then = _export(client, auditor.headers, f"&after_id={at}")
    assert _names(rest) == ["a2"]
    assert then > at


def test_bad_positions_are_refused_before_the_export_streams(client, db, tenant):
    """A negative or non-numeric after_id, or one beside after_seq, is a 400 naming it."""
    operator = make_key(db, "operator")
    for query, field in (("after_id=-1", "after_id"), ("after_id=x", "after_id"),
                         ("organization=acme&after_seq=1&after_id=1", "after_id")):
        response = client.get(f"/api/v1/audit/export?{query}", headers=operator.headers)
        assert response.status_code == 400, query
        assert response.get_json()["errors"][0]["field"] == field, query
    spec = client.get("/api/v1/openapi.json").get_json()
    export = spec["paths"]["/api/v1/audit/export"]["get"]
    assert HEADER in export["responses"]["200"]["headers"]
    assert "503" in export["responses"]


def test_the_cli_keeps_its_position_in_a_file(db, tenant, other_tenant, database_url,
                                              tmp_path):
    """`--position-file`: the first export takes everything and keeps its position; the
    next takes only what came since; an unreadable file or two positions are refused."""
    kept = tmp_path / "audit.position"
    _record(db, tenant.org.id, "a1")

    def export() -> list[str]:
        out = roster(database_url, "audit", "export", "--position-file", str(kept)).output
        return _names([json.loads(line) for line in out.splitlines()])

    assert export() == ["a1"]
    first = int(kept.read_text())
    _record(db, other_tenant.org.id, "b1")
    assert export() == ["b1"]
    assert int(kept.read_text()) > first
    assert export() == []
    out = roster(database_url, "audit", "export", "--after-id", str(first)).output
    assert _names([json.loads(line) for line in out.splitlines()]) == ["b1"]
    kept.write_text("twelve\n")
    refused = roster(database_url, "audit", "export", "--position-file", str(kept), ok=False)
    assert "holds no position" in refused.output
    both = roster(database_url, "audit", "export", "--position-file", str(kept),
                  "--after-id", "1", ok=False)
    assert "not both" in both.output
