"""The deprovisioning record feed (``GET /api/v1/deprovisions``) against many records.

One organization gets N deprovisioning records, each named by its ``user:deprovision``
audit event, and two other audit events per record (``user:update`` on the same user), so
the log holds 3N events; a second organization gets a few records, so the cross-organization
feed (an operator key) has another chain to wait for. Rows are bulk inserted with Core (the
chain's hashes are not real: nothing here verifies them), at migration 0034, and the
database is then upgraded to head: the time of that upgrade is the migration's cost on N
records (nothing when head is 0034).

Then the feed's statement (app/audit/record_feed.py, paged as the view pages it) is run for
the first page, a page from the middle and the last page (limit 50), for one organization
and across organizations; each figure is the median of DEPROV_FEED_REPEAT runs, and each
statement's plan is printed (SQLite: EXPLAIN QUERY PLAN; PostgreSQL: EXPLAIN ANALYZE).
The first page is also fetched over the app (Flask's test client, an auditor key).

Environment: DEPROV_FEED_N=100000, DEPROV_FEED_REPEAT=15, DEPROV_FEED_DBS=sqlite,postgresql.
PostgreSQL needs ROSTER_TEST_PG_URL (``python -m tests.pg_server start`` prints it); the
bench creates and drops a database of its own there.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from app import create_app  # noqa: E402
from app.api.pagination import encode_cursor, paginate  # noqa: E402
from app.audit import Actor  # noqa: E402
from app.audit.record_feed import POSITION, records_by_position  # noqa: E402
from app.db import Database  # noqa: E402
from app.directory.apikeys import create_key  # noqa: E402
from app.directory.organizations import create_organization  # noqa: E402
from app.mapping.catalog import load_catalog  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from app.models import AuditChainHead, AuditEvent, Organization  # noqa: E402
from app.models.lifecycle import DeprovisionRecord  # noqa: E402

OPERATOR = Actor(type="operator", id="bench")
LIMIT = 50
BATCH = 5_000


def _record(org_id: str, user_id: str, at: datetime) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "event_id": str(uuid.uuid4()),
            "organization_id": org_id, "user_id": user_id, "scim_id": user_id,
            "external_id": None, "user_name": f"{user_id[:8]}@bench.example",
            "directory_id": None, "vendor": None, "dialect": None, "trigger": "scim_active",
            "reason": None, "actor_type": "directory", "actor_id": None, "request_id": None,
            "source_ip": None, "user_agent": None, "received_at": at, "applied_at": at,
            "revocation_committed_at": at, "latency_ms": 1.0, "state_before": {},
            "state_after": {}, "sessions_revoked": 0, "tokens_revoked": 0,
            "grants_removed": 0, "outcome": "applied", "error": None, "batch_id": None,
            "restored_at": None}


def _event(org_id: str, seq: int, action: str, user_id: str, at: datetime,
           data: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "chain": org_id, "seq": seq,
            "organization_id": org_id, "occurred_at": at, "action": action,
            "actor_type": "directory", "actor_id": None, "subject_type": "user",
            "subject_id": user_id, "request_id": None, "data": data,
            "prev_hash": "0" * 64, "hash": "0" * 64}


def seed_org(db: Database, slug: str, n: int) -> str:
    """An organization with ``n`` records, each named by its event, and 2n other events."""
    with db.transaction() as s:
        org = create_organization(s, slug, slug.title(), load_catalog(
            ROOT / "config" / "roles.toml"), OPERATOR)
        org_id = org.id
    with db.transaction() as s:
        seq = s.scalar(sa.select(AuditChainHead.seq).where(AuditChainHead.chain == org_id)) or 0
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for first in range(0, n, BATCH):
        records, events = [], []
        for i in range(first, min(n, first + BATCH)):
            user_id, at = str(uuid.uuid4()), start + timedelta(seconds=i)
            rec = _record(org_id, user_id, at)
            records.append(rec)
            for action, data in (("user:update", {}), ("user:deprovision",
                                                       {"record_id": rec["id"]}),
                                 ("user:update", {"after": "deprovision"})):
                seq += 1
                events.append(_event(org_id, seq, action, user_id, at, data))
        with db.transaction() as s:
            s.execute(sa.insert(DeprovisionRecord.__table__), records)
            s.execute(sa.insert(AuditEvent.__table__), events)
    with db.transaction() as s:
        s.execute(sa.update(AuditChainHead.__table__)
                  .where(AuditChainHead.chain == org_id).values(seq=seq))
    return org_id


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh database URL of ``kind``, removed afterwards."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/feed.db"
        return
    base = os.environ["ROSTER_TEST_PG_URL"]
    name = f"feed_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield str(sa.engine.make_url(base).set(database=name))
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        admin.dispose()


def median_ms(run: Callable[[], Any], repeat: int) -> float:
    """Median wall time of ``run`` in milliseconds (one warm-up run first)."""
    run()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def page_statement(db: Database, org_id: str | None, cursor: str | None) -> sa.Select[Any]:
    """The statement the view runs for one page (after the cursor, ordered, limit + 1)."""
    with db.transaction(readonly=True) as s:
        stmt = records_by_position(s, org_id)
    if cursor:
        from app.api.pagination import _after, decode_cursor
        stmt = stmt.where(_after((POSITION,), decode_cursor(cursor, (POSITION,))))
    return stmt.order_by(POSITION).limit(LIMIT + 1)


def plan(db: Database, stmt: sa.Select[Any]) -> str:
    """The plan of ``stmt`` (literal values inlined)."""
    with db.engine.connect() as conn:
        sql = str(stmt.compile(conn, compile_kwargs={"literal_binds": True}))
        if db.dialect == "sqlite":
            return "\n".join(f"  {row[-1]}" for row in
                             conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
        rows = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}")
        return "\n".join(f"  {row[0]}" for row in rows)


def run(kind: str, n: int, repeat: int) -> None:
    """Seed, upgrade, and time the pages on one database."""
    with database(kind) as url:
        upgrade(url, "0034")
        db = Database(url)
        t0 = time.perf_counter()
        org_id = seed_org(db, "bench", n)
        seed_org(db, "other", 100)
        seeded = time.perf_counter() - t0
        t0 = time.perf_counter()
        upgrade(url)
        migrated = time.perf_counter() - t0
        if kind == "postgresql":
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.exec_driver_sql("VACUUM ANALYZE")
        with db.transaction(readonly=True) as s:
            events = s.scalar(sa.select(sa.func.count()).select_from(AuditEvent))
            positions = [row[1] for row in s.execute(
                records_by_position(s, org_id).order_by(POSITION))]
        print(f"\n== {kind}: {len(positions)} records of one organization, {events} audit "
              f"events; seeded in {seeded:.1f} s, upgrade to head {migrated:.2f} s", flush=True)
        cursors = {"first": None, "middle": encode_cursor([positions[len(positions) // 2]]),
                   "last": encode_cursor([positions[-LIMIT - 1]])}
        for scope, scope_org in (("one organization", org_id), ("all organizations", None)):
            for name, cursor in cursors.items():
                def one_page(scope_org: str | None = scope_org,
                             cursor: str | None = cursor) -> None:
                    with db.transaction(readonly=True) as s:
                        page = paginate(s, records_by_position(s, scope_org), (POSITION,),
                                        limit=LIMIT, cursor=cursor, keyed=True)
                        assert len(page.items) == LIMIT, len(page.items)
                ms = median_ms(one_page, repeat)
                print(f"{scope:>18} {name:>6} page: {ms:8.2f} ms", flush=True)
                print(plan(db, page_statement(db, scope_org, cursor)), flush=True)
        app = create_app({"app": {"env": "test", "base_url": "http://roster.test"},
                          "database": {"url": url}, "logging": {"level": "WARNING"},
                          "ratelimit": {"api": "100000/minute", "storage": "memory"}})
        with db.transaction() as s:
            _key, secret = create_key(s, "auditor", s.get(Organization, org_id), OPERATOR)
        client = app.test_client()
        headers = {"Authorization": f"Bearer {secret}"}

        def request() -> None:
            response = client.get(f"/api/v1/deprovisions?limit={LIMIT}", headers=headers)
            assert response.status_code == 200, response.get_data(as_text=True)

        print(f"  GET /api/v1/deprovisions (auditor, first page): "
              f"{median_ms(request, repeat):.2f} ms", flush=True)
        db.engine.dispose()
        app.extensions["roster.db"].engine.dispose()


def main() -> None:
    """Run on each database named in DEPROV_FEED_DBS."""
    n = int(os.environ.get("DEPROV_FEED_N", "100000"))
    repeat = int(os.environ.get("DEPROV_FEED_REPEAT", "15"))
    for kind in os.environ.get("DEPROV_FEED_DBS", "sqlite,postgresql").split(","):
        if kind == "postgresql" and not os.environ.get("ROSTER_TEST_PG_URL"):
            print("postgresql: ROSTER_TEST_PG_URL is not set; skipped")
            continue
        run(kind, n, repeat)


if __name__ == "__main__":
    main()
