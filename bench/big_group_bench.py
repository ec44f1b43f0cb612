"""What renaming, editing and deleting one very large group costs (RFC 7644 §3.5, §3.6).

A group write that changes what its members show of their groups (a rename, a delete)
moves every member's version (``users.groups_version``, app/directory/versions.py), so
its cost grows with the group. This script builds a directory of N users, one group with
all of them, and times, through the SCIM API in-process (Flask test client, as
request_cost_bench.py), one request after another on SQLite and on a throwaway PostgreSQL
(tests/pg_server.py, as the other benchmarks):

- PATCH replace displayName (a rename), three times in a row;
- PUT with a new displayName and the same members;
- PATCH remove of one member, then PATCH add of it back;
- DELETE of the group;

and, before those, 1,000 SCIM creates one after another (what a lower fillfactor costs).

Set-up: one user is created through SCIM POST; the other N - 1 are copies of its row
(new id, userName, externalId and emails, in batches of 5,000 through SQLAlchemy Core),
with the memberships the group's PATCH add would write and the ``groups_version`` it
would leave (1), so the table holds the rows SCIM creates and adds would, packed as a
bulk load leaves them (no free room on the pages: the worst case for PostgreSQL's HOT
updates). PostgreSQL then gets ``VACUUM ANALYZE`` (autovacuum's steady state). The load
time and the users table's size are printed too.

  PYTHONPATH=. .venv/bin/python bench/big_group_bench.py [sqlite] [postgresql]

Sizes and options: BIG_GROUP_USERS (50000); BIG_GROUP_FILLFACTOR (PostgreSQL only: set
on ``users`` before the load, e.g. 80; unset: the default, 100).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from harness import PY, clean_env, database, demo_token  # noqa: E402
from scim_bench import CORE_GROUP, patch, user_name, user_payload  # noqa: E402

KINDS = ("sqlite", "postgresql")
CHUNK = 5000
CREATES = 1000


def _app(url: str, tmp: Path) -> tuple[Any, dict[str, str]]:
    """The migrated database at ``url`` with the demo directory, the app and SCIM headers."""
    env = clean_env(ROSTER_DATABASE__URL=url,
                    ROSTER_SIGNING__DEV_KEY_FILE=str(tmp / "signing_key.pem"),
                    ROSTER_RATELIMIT__SCIM="10000000/minute",
                    # A PUT naming 50,000 members is ~2.5 MB.
                    ROSTER_APP__MAX_BODY_BYTES="67108864")
    token = demo_token(env)
    os.environ.update({k: v for k, v in env.items() if k.startswith("ROSTER_")})
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the access log, for the process
    from app import create_app

    return create_app(), {"Authorization": f"Bearer {token}",
                          "Content-Type": "application/scim+json"}


def _call(client: Any, headers: dict[str, str], method: str, path: str,
          body: object = None, expect: int = 200) -> tuple[Any, float]:
    began = time.perf_counter()
    response = client.open(path, method=method, json=body, headers=headers)
    took = time.perf_counter() - began
    if response.status_code != expect:
        print(f"{method} {path}: {response.status_code} {response.data[:500]!r}", flush=True)
        sys.exit(1)
    return (response.get_json() if response.data else None), took


def _load(app: Any, client: Any, headers: dict[str, str], users: int,
          fillfactor: str | None) -> tuple[str, str]:
    """N users and one group of all of them; returns (group id, one member's id)."""
    from sqlalchemy import insert, select, text

    from app.db import utcnow
    from app.ids import new_id
    from app.models import Membership, User

    engine = app.extensions["roster.db"].engine
    postgres = engine.dialect.name == "postgresql"
    if postgres and fillfactor:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE users SET (fillfactor = {int(fillfactor)})"))
    first, _ = _call(client, headers, "POST", "/scim/v2/Users", user_payload(0), 201)
    group, _ = _call(client, headers, "POST", "/scim/v2/Groups",
                     {"schemas": [CORE_GROUP], "displayName": "Everyone"}, 201)
    began = time.perf_counter()
    table = User.__table__
    with engine.begin() as conn:
        template = dict(conn.execute(select(table).where(table.c.id == first["id"]))
                        .mappings().one())
        conn.execute(table.update().where(table.c.id == first["id"])
                     .values(groups_version=1, groups_at=utcnow()))
        now = utcnow()
        conn.execute(insert(Membership), [{"group_id": group["id"], "user_id": first["id"],
                                           "created_at": now}])
        for start in range(1, users, CHUNK):
            rows = []
            for i in range(start, min(start + CHUNK, users)):
                name = user_name(i)
                rows.append({**template, "id": new_id(), "user_name": name,
                             "external_id": f"00u{i:017d}", "primary_email": name,
                             "emails": [{"value": name, "type": "work", "primary": True}],
                             "display_name": f"Given{i} Family{i}",
                             "given_name": f"Given{i}", "family_name": f"Family{i}",
                             "created_at": now, "updated_at": now,
                             "groups_version": 1, "groups_at": now})
            conn.execute(insert(table), rows)
            conn.execute(insert(Membership), [{"group_id": group["id"], "user_id": r["id"],
                                               "created_at": now} for r in rows])
    if postgres:
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                text("VACUUM ANALYZE"))
    print(f"  load {users:,} users + memberships: {time.perf_counter() - began:.1f} s"
          f"{'' if not postgres else f' (fillfactor {fillfactor or 100})'}", flush=True)
    _size(engine)
    return group["id"], first["id"]


def _size(engine: Any) -> None:
    from sqlalchemy import text

    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:
        heap, total = conn.execute(text(
            "SELECT pg_relation_size('users'), pg_total_relation_size('users')")).one()
        hot, upd = conn.execute(text(
            "SELECT n_tup_hot_upd, n_tup_upd FROM pg_stat_user_tables "
            "WHERE relname = 'users'")).one()
        indexes = conn.execute(text(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'users'")).scalars().all()
    # An UPDATE is HOT (no new index entries) only if it changes no indexed column and the
    # new row version fits on the same page.
    moved = [d for d in indexes if "groups_" in d]
    print(f"  users table: heap {heap / 2**20:.1f} MiB, with indexes {total / 2**20:.1f} MiB"
          f" ({len(indexes)} indexes, {len(moved)} on groups_version/groups_at);"
          f" updates so far {upd:,} (HOT {hot:,})", flush=True)


def run(kind: str) -> None:
    """Load, then time each write once (three renames), printing as it goes."""
    users = int(os.environ.get("BIG_GROUP_USERS", 50_000))
    tmp = Path(tempfile.mkdtemp(prefix=f"big-group-{kind}-"))
    try:
        with database(kind, tmp) as url:
            app, headers = _app(url, tmp)
            client = app.test_client()
            print(f"{kind}: {users:,}-member group", flush=True)
            gid, member = _load(app, client, headers, users,
                                os.environ.get("BIG_GROUP_FILLFACTOR"))
            creates = []
            for i in range(users, users + CREATES):
                _, took = _call(client, headers, "POST", "/scim/v2/Users", user_payload(i), 201)
                creates.append(took)
            creates.sort()
            print(f"  {CREATES:,} SCIM creates after it: median {creates[CREATES // 2] * 1e3:.1f}"
                  f" ms, p90 {creates[CREATES * 9 // 10] * 1e3:.1f} ms", flush=True)
            path = f"/scim/v2/Groups/{gid}"
            for n in (1, 2, 3):
                _, took = _call(client, headers, "PATCH", path, patch(
                    {"op": "replace", "path": "displayName", "value": f"Everyone {n}"}), 204)
                print(f"  PATCH rename #{n:<26} {took:7.3f} s", flush=True)
            members = [{"value": member}] + [
                {"value": m} for m in _member_ids(app, gid) if m != member]
            _, took = _call(client, headers, "PUT", path, {
                "schemas": [CORE_GROUP], "displayName": "Everyone PUT", "members": members})
            print(f"  PUT rename (same {len(members):,} members)   {took:7.3f} s", flush=True)
            _, took = _call(client, headers, "PATCH", path, patch(
                {"op": "remove", "path": f'members[value eq "{member}"]'}), 204)
            print(f"  PATCH remove one member          {took:7.3f} s", flush=True)
            _, took = _call(client, headers, "PATCH", path, patch(
                {"op": "add", "path": "members", "value": [{"value": member}]}), 204)
            print(f"  PATCH add one member             {took:7.3f} s", flush=True)
            _, took = _call(client, headers, "DELETE", path, None, 204)
            print(f"  DELETE group                     {took:7.3f} s", flush=True)
            _size(app.extensions["roster.db"].engine)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _member_ids(app: Any, gid: str) -> list[str]:
    from sqlalchemy import select

    from app.models import Membership

    with app.extensions["roster.db"].engine.connect() as conn:
        return list(conn.scalars(select(Membership.user_id)
                                 .where(Membership.group_id == gid)))


def main() -> None:
    """Each database named (default: both), one process each (an app is per process)."""
    kinds = [a for a in sys.argv[1:] if a in KINDS] or list(KINDS)
    if len(kinds) > 1:
        for kind in kinds:
            subprocess.run([PY, __file__, kind], check=True)
        return
    run(kinds[0])


if __name__ == "__main__":
    main()
