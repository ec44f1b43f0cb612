"""Migration 0037: oauth_authorization_codes is indexed by (client_id, nonce), and the OIDC
provider's nonce-reuse check (app/sso/provider.py, exists_nonce) can read it instead of the
whole table; the downgrade drops the index."""

from __future__ import annotations

import sqlalchemy as sa

from app.migrate import current_revision, downgrade, upgrade
from app.models.sso import AuthorizationCode

INDEX = "ix_oauth_authorization_codes_client_id_nonce"


def _indexes(engine: sa.Engine) -> dict[str, list[str | None]]:
    return {ix["name"]: ix["column_names"]
            for ix in sa.inspect(engine).get_indexes("oauth_authorization_codes")}


def _nonce_check_plan(engine: sa.Engine) -> str:
    """The plan of the provider's query (the same statement exists_nonce runs)."""
    query = sa.select(AuthorizationCode.code_hash).where(
        AuthorizationCode.nonce == "n-1", AuthorizationCode.client_id == "portal")
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            # An empty table is cheapest to scan: ask whether the index can serve the query.
            conn.execute(sa.text("SET enable_seqscan = off"))
            rows = conn.execute(sa.text(f"EXPLAIN {sql}")).scalars().all()
        else:
            rows = [row[-1] for row in conn.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}"))]
    return "\n".join(rows)


def test_the_nonce_check_reads_the_index(fresh_url):
    """At 0037 the index holds the client and the nonce, and the check's plan uses it."""
    upgrade(fresh_url)
    engine = sa.create_engine(fresh_url)
    try:
        assert current_revision(engine) == "0037"
        assert _indexes(engine)[INDEX] == ["client_id", "nonce"]
        assert INDEX in _nonce_check_plan(engine)
    finally:
        engine.dispose()


def test_the_downgrade_drops_the_index(fresh_url):
    """Down to 0036: no index, the check scans; up again: back."""
    upgrade(fresh_url)
    engine = sa.create_engine(fresh_url)
    try:
        downgrade(fresh_url, "0036")
        assert current_revision(engine) == "0036"
        assert INDEX not in _indexes(engine)
        assert INDEX not in _nonce_check_plan(engine)
        upgrade(fresh_url)
        assert INDEX in _indexes(engine)
    finally:
        engine.dispose()
