"""The periodic SSO purge (app/sso/maintenance.py: traces, SAML requests and replay cache,
OIDC login attempts and authorization codes, tokens, ended login sessions, back-channel
logouts) finds its rows by index: each DELETE it actually runs is explained, with its own
parameters, on the database under test. Without an index on the column a delete ranges
over, the plan is a scan of the whole table, every 10 minutes, of tables that grow with
each login (before migration 0023: AuthorizationCode.expires_at, SamlRequest.expires_at,
BackchannelLogout.created_at)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import pytest

from app.db import Database
from app.sso.maintenance import purge_expired_rows
from tests.statements import captured


def statements(db: Database) -> AbstractContextManager[list[tuple[str, Any]]]:
    """Every DELETE the engine runs meanwhile, with its parameters."""
    return captured(db.engine, lambda sql: sql.lstrip().upper().startswith("DELETE"))


def plan(db: Database, statement: str, parameters: Any) -> str:
    """The plan of ``statement``; on PostgreSQL with sequential scans discouraged (it picks
    them for any table this small; a table without a usable index is scanned anyway)."""
    with db.engine.connect() as conn, conn.begin():
        if db.dialect == "postgresql":
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            return "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {statement}",
                                                                 parameters))
        conn.exec_driver_sql("SELECT count(*) FROM login_sessions").scalar()  # schema cookie
        return "\n".join(str(r[-1]) for r in conn.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {statement}", parameters))


def scans(plan_text: str) -> bool:
    """Whether the plan reads a whole table."""
    return "Seq Scan" in plan_text or any(
        line.lstrip().startswith("SCAN") and "CONSTANT ROW" not in line
        for line in plan_text.splitlines())


@pytest.mark.parametrize("limit", [None, 1000], ids=["whole", "batched"])
def test_every_delete_of_the_periodic_sso_purge_uses_an_index(db, tenant, limit):
    """Whole (`purge_expired_rows`) and a batch at a time (the worker's, the CLI's)."""
    with statements(db) as seen, db.transaction() as session:
        purge_expired_rows(session, limit, trace_retention_days=30)
    tables = {sql.split()[2] for sql, _ in seen}
    assert {"oauth_authorization_codes", "saml_requests", "oidc_backchannel_logouts",
            "login_sessions", "issued_tokens", "saml_seen_assertions", "sso_login_traces",
            "oidc_login_requests"} <= tables, tables
    scanned = {sql: text for sql, params in seen if scans(text := plan(db, sql, params))}
    assert not scanned, scanned
