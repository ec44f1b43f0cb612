"""MultiXact growth of concurrent SCIM writes on PostgreSQL (the directory row FOR SHARE).

Every SCIM write holds its directory's row FOR SHARE (app/directory/hold.py, step 0 of the
lock order). When two transactions share-lock one row, PostgreSQL records both in a
MultiXact (and a new one each time another locker joins, as a MultiXact is immutable), so
overlapping writes of one directory consume MultiXact ids and member slots. Their ids wrap
at 2^32 and members too: autovacuum must freeze every table of the database before
``autovacuum_multixact_freeze_max_age`` (400 million by default) ids have been used.

This runs Roster under gunicorn (2 workers, config/gunicorn.conf.py) on a throwaway
PostgreSQL (tests/pg_server.py) and sends Okta-style ``POST /Users`` at several client
concurrencies, and reads the counters around each run: ``next_multixact_id`` and
``next_multi_offset`` of ``pg_control_checkpoint()`` (exact after a CHECKPOINT) and
``mxid_age(datminmxid)`` of the database. Printed per 1,000 writes.

  MULTIXACT_BENCH_WRITES=2000        creates per concurrency level
  MULTIXACT_BENCH_CONCURRENCY=1,4,8  client threads (the server runs 2 x 4 request threads)
  MULTIXACT_BENCH_SECONDS=240        time bound per level
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from harness import clean_env, database, demo_token, gunicorn, line, request_task, run_load
from scim_bench import user_payload


@dataclass(frozen=True)
class Counters:
    """PostgreSQL's MultiXact counters at one moment."""

    next_id: int
    next_offset: int
    age: int


def counters(engine: sa.Engine) -> Counters:
    """The counters after a CHECKPOINT (pg_control_checkpoint() is as of the last one)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("CHECKPOINT"))
        next_id, offset = conn.execute(sa.text(
            "SELECT next_multixact_id::text::bigint, next_multi_offset::text::bigint "
            "FROM pg_control_checkpoint()")).one()
        age = conn.execute(sa.text("SELECT mxid_age(datminmxid) FROM pg_database "
                                   "WHERE datname = current_database()")).scalar_one()
    return Counters(next_id, offset, age)


@contextmanager
def roster_on_postgresql() -> Iterator[tuple[int, dict[str, str], str]]:
    """A migrated throwaway PostgreSQL with the demo directory, served by gunicorn: the
    port, the SCIM headers and the database URL (bench/harness.py's serve_roster, with the
    URL)."""
    tmp = Path(tempfile.mkdtemp(prefix="multixact-bench-"))
    try:
        with database("postgresql", tmp) as url:
            prom = tmp / "prometheus"
            prom.mkdir()
            env = clean_env(ROSTER_DATABASE__URL=url, PROMETHEUS_MULTIPROC_DIR=str(prom),
                            ROSTER_SIGNING__DEV_KEY_FILE=str(tmp / "signing_key.pem"),
                            ROSTER_RATELIMIT__SCIM="10000000/minute")
            headers = {"Authorization": f"Bearer {demo_token(env)}",
                       "Content-Type": "application/scim+json",
                       "Accept": "application/scim+json"}
            with gunicorn("app:create_app()", env, tmp / "gunicorn.log") as port:
                yield port, headers, url
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    """Run each concurrency level and print the MultiXact growth per 1,000 writes."""
    writes = int(os.environ.get("MULTIXACT_BENCH_WRITES", "2000"))
    levels = [int(c) for c in os.environ.get("MULTIXACT_BENCH_CONCURRENCY", "1,4,8").split(",")]
    seconds = float(os.environ.get("MULTIXACT_BENCH_SECONDS", "240"))
    print(f"POST /Users on PostgreSQL, {writes} per level, concurrency {levels}", flush=True)
    with roster_on_postgresql() as (port, headers, url):
        engine = sa.create_engine(url)
        first = 0
        for concurrency in levels:
            tasks = [request_task("POST", "/scim/v2/Users", user_payload(first + i), ok=(201,))
                     for i in range(writes)]
            first += writes
            before = counters(engine)
            result = run_load(f"create, concurrency {concurrency}", tasks, port, headers,
                              seconds, concurrency=concurrency)
            after = counters(engine)
            done = len(result.latencies) - result.errors
            per = 1000 / done if done else float("nan")
            print(line(result), flush=True)
            print(f"  multixacts {after.next_id - before.next_id} "
                  f"({(after.next_id - before.next_id) * per:.0f} per 1,000 writes), "
                  f"members {after.next_offset - before.next_offset} "
                  f"({(after.next_offset - before.next_offset) * per:.0f} per 1,000), "
                  f"mxid_age(datminmxid) {before.age} -> {after.age}", flush=True)
        engine.dispose()


if __name__ == "__main__":
    main()
