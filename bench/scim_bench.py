"""SCIM benchmark (issue 4, Performance): Roster under gunicorn against a bare-Flask ceiling.

Starts Roster (2 gunicorn workers, config/gunicorn.conf.py) on SQLite and on a throwaway
PostgreSQL (tests/pg_server.py), and bench/ceiling_app.py under the same gunicorn, then drives
them over real HTTP at concurrency 8 with the SCIM wire protocol (RFC 7644) only.

Sizes come from the environment (defaults finish in a few minutes on 2 cores):
  SCIM_BENCH_USERS=2000        users created (the create scenario)
  SCIM_BENCH_GROUP=2000        members of the big group (more users are created if needed)
  SCIM_BENCH_LOOKUPS=1000      userName and externalId filter lookups, each
  SCIM_BENCH_OPS=200           single-member add+remove pairs per group
  SCIM_BENCH_DEACTIVATE=500    deactivation PATCHes
  SCIM_BENCH_SECONDS=240       time bound per scenario (it stops early and says so)
  SCIM_BENCH_DBS=sqlite,postgresql
  SCIM_BENCH_FULL=1 (or --full) the issue's full run: 10,000 users, a 50,000-member group
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import (
    CONCURRENCY,
    ROOT,
    ROSTER,
    Client,
    Result,
    Task,
    clean_env,
    database,
    gunicorn,
    line,
    request_task,
    run_load,
    serve_roster,
)

# Re-exported: bench/entra_bench.py imports these from here.
__all__ = ["ROOT", "ROSTER", "Client", "Result", "Task", "clean_env", "database", "gunicorn",
           "line", "patch", "quoted", "request_task", "run_load", "serve_roster"]

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
DEPARTMENTS = ["Engineering", "Sales", "Finance", "Support", "Operations"]


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does."""

    users: int
    group: int
    lookups: int
    ops: int
    deactivate: int
    seconds: float
    dbs: tuple[str, ...]

    @classmethod
    def from_env(cls, full: bool) -> Sizes:
        """Sizes from SCIM_BENCH_* (the full run: 10,000 users, 50,000 members)."""
        return cls(users=_int("SCIM_BENCH_USERS", 10_000 if full else 2000),
                   group=_int("SCIM_BENCH_GROUP", 50_000 if full else 2000),
                   lookups=_int("SCIM_BENCH_LOOKUPS", 2000 if full else 1000),
                   ops=_int("SCIM_BENCH_OPS", 200),
                   deactivate=_int("SCIM_BENCH_DEACTIVATE", 1000 if full else 500),
                   seconds=float(os.environ.get("SCIM_BENCH_SECONDS", 900 if full else 240)),
                   dbs=tuple(os.environ.get("SCIM_BENCH_DBS", "sqlite,postgresql").split(",")))


# ---------------------------------------------------------------- scenarios


def user_name(i: int) -> str:
    """The userName of bench user ``i``."""
    return f"bench.user{i:06d}@example.com"


def user_payload(i: int) -> dict[str, object]:
    """An Okta-style runtime create: externalId, password, groups [], locale, enterprise."""
    return {
        "schemas": [CORE_USER, ENTERPRISE], "userName": user_name(i),
        "externalId": f"00u{i:017d}", "active": True, "locale": "en-US",
        "password": f"Pw-{i}-{random.randrange(10**9)}", "groups": [],
        "name": {"givenName": f"Given{i}", "familyName": f"Family{i}"},
        "displayName": f"Given{i} Family{i}",
        "emails": [{"value": user_name(i), "type": "work", "primary": True}],
        "phoneNumbers": [{"value": f"+49 30 {i:07d}", "type": "work"}],
        ENTERPRISE: {"employeeNumber": str(100000 + i), "department": DEPARTMENTS[i % 5],
                     "costCenter": f"CC-{i % 20}", "organization": "Acme", "division": "EMEA"},
    }


def quoted(text: str) -> str:
    """Percent-encode a query value."""
    return urllib.parse.quote(text, safe="")


def patch(*operations: dict[str, object]) -> dict[str, object]:
    """A PatchOp message (RFC 7644 §3.5.2)."""
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


class Target:
    """A running server and the results measured on it."""

    def __init__(self, label: str, port: int, headers: dict[str, str], sizes: Sizes) -> None:
        self.label, self.port, self.headers, self.sizes = label, port, headers, sizes
        self.results: dict[str, Result] = {}
        self.facts: dict[str, str] = {}

    def load(self, key: str, name: str, tasks: list[Task], concurrency: int = CONCURRENCY,
             ) -> Result:
        """Run one scenario and keep its result under ``key``."""
        result = run_load(name, tasks, self.port, self.headers, self.sizes.seconds, concurrency)
        self.results[key] = result
        print(f"  {self.label}: {line(result)}", flush=True)
        return result

    def call(self, method: str, path: str, body: object = None) -> tuple[int, object]:
        """One request outside any measurement."""
        status, data, _ = Client(self.port, self.headers).call(method, path, body)
        return status, data


def roster_scenarios(t: Target) -> None:
    """Every SCIM scenario of issue 4 against one Roster server."""
    sizes = t.sizes
    total = max(sizes.users, sizes.group + sizes.ops)
    ids: dict[int, str] = {}

    def keep(i: int) -> Callable[[object], bool]:
        def store(data: object) -> bool:
            ids[i] = data["id"]  # type: ignore[index]
            return True
        return store

    t.load("create", f"create users ({total})",
           [request_task("POST", "/scim/v2/Users", user_payload(i), (201,), keep(i))
            for i in range(total)])
    created = sorted(ids)
    sample = [random.choice(created) for _ in range(sizes.lookups)]

    def one(i: int) -> Callable[[object], bool]:
        return lambda data: (data["totalResults"] == 1  # type: ignore[index]
                             and data["Resources"][0]["id"] == ids[i])  # type: ignore[index]

    t.load("lookup_username", f"userName eq lookups ({len(sample)})", [
        request_task("GET", "/scim/v2/Users?filter=" + quoted(
            f'userName eq "{user_name(i).upper() if i % 2 else user_name(i)}"'), check=one(i))
        for i in sample])
    t.load("lookup_external", f"externalId eq lookups ({len(sample)})", [
        request_task("GET", "/scim/v2/Users?filter=" + quoted(f'externalId eq "00u{i:017d}"'),
                     check=one(i)) for i in sample])
    paging(t, len(created))
    groups(t, [ids[i] for i in created])
    t.load("deactivate", f"deactivation PATCHes ({min(sizes.deactivate, len(created))})", [
        request_task("PATCH", f"/scim/v2/Users/{ids[i]}",
                     patch({"op": "replace", "value": {"active": False}}), (200, 204))
        for i in created[:sizes.deactivate]])


def paging(t: Target, count: int) -> None:
    """Walk all users by cursor, then compare the first and last pages (RFC 9865)."""
    walk = Result(f"cursor walk, 100 per page ({count} users)")
    client, cursor, last = Client(t.port, t.headers), "", ""
    started = time.perf_counter()
    seen = 0
    while cursor is not None:
        status, data, elapsed = client.call("GET", f"/scim/v2/Users?count=100&cursor={cursor}")
        walk.latencies.append(elapsed)
        if status != 200:
            walk.errors += 1
            walk.first_error = walk.first_error or json.dumps(data)[:300]
            break
        seen += len(data["Resources"])  # type: ignore[index]
        last, cursor = cursor, data.get("nextCursor")  # type: ignore[union-attr]
    walk.seconds = time.perf_counter() - started
    if seen != count:
        walk.errors += 1
        walk.first_error = walk.first_error or f"walk saw {seen} users of {count}"
    t.results["walk"] = walk
    print(f"  {t.label}: {line(walk)}", flush=True)
    repeat = 200
    t.load("cursor_first", "cursor page 1 (count=100)",
           [request_task("GET", "/scim/v2/Users?count=100&cursor=")] * repeat)
    t.load("cursor_last", "cursor last page (count=100)",
           [request_task("GET", f"/scim/v2/Users?count=100&cursor={last}")] * repeat)
    t.load("index_first", "startIndex=1 (count=100)",
           [request_task("GET", "/scim/v2/Users?count=100&startIndex=1")] * repeat)
    t.load("index_last", f"startIndex={max(1, count - 99)} (count=100)",
           [request_task("GET", f"/scim/v2/Users?count=100&startIndex={max(1, count - 99)}")]
           * repeat)


def groups(t: Target, user_ids: list[str]) -> None:
    """Build the big group in batches of 100, then single-member changes big vs small."""
    sizes = t.sizes
    spare, members = user_ids[-sizes.ops:], user_ids[:-sizes.ops][:sizes.group]
    status, big = t.call("POST", "/scim/v2/Groups",
                         {"schemas": [CORE_GROUP], "displayName": "Bench big"})
    status2, small = t.call("POST", "/scim/v2/Groups", {
        "schemas": [CORE_GROUP], "displayName": "Bench small",
        "members": [{"value": m} for m in members[:10]]})
    if status != 201 or status2 != 201:
        sys.exit(f"group create failed: {status} {big} / {status2} {small}")
    big_id, small_id = big["id"], small["id"]  # type: ignore[index]
    batches = [members[i:i + 100] for i in range(0, len(members), 100)]
    t.load("group_build", f"add 100 members per PATCH ({len(members)} members)", [
        request_task("PATCH", f"/scim/v2/Groups/{big_id}", patch(
            {"op": "add", "path": "members", "value": [{"value": m} for m in batch]}),
            (200, 204)) for batch in batches])
    _, data = t.call("GET", "/scim/v2/Users?count=0&filter=" + quoted(
        f'groups.value eq "{big_id}"'))
    t.facts["big group members"] = str(data["totalResults"])  # type: ignore[index]
    for key, gid, label in (("single_big", big_id, f"{len(members)}-member"),
                            ("single_small", small_id, "10-member")):
        t.load(key, f"single add+remove, {label} group ({2 * len(spare)})",
               [pair_task(gid, uid) for uid in spare])


def pair_task(group_id: str, user_id: str) -> Task:
    """Add one member, then remove it by value filter (Okta Group Push shape)."""
    add = patch({"op": "add", "path": "members", "value": [{"value": user_id}]})
    remove = patch({"op": "remove", "path": f'members[value eq "{user_id}"]'})

    def task(client: Client, record: Callable[..., None]) -> None:
        for body in (add, remove):
            status, data, elapsed = client.call("PATCH", f"/scim/v2/Groups/{group_id}", body)
            record("PATCH member", status, data, elapsed, (200, 204))
    return task


def ceiling_scenarios(t: Target) -> None:
    """The ceiling: the same create payloads as inserts, and lookups as selects."""
    sizes = t.sizes
    t.load("create", f"insert ({sizes.users})",
           [request_task("POST", "/items", user_payload(i), (201,)) for i in range(sizes.users)])
    t.load("lookup", f"select ({sizes.lookups})", [
        request_task("GET", "/items?name=" + quoted(user_name(random.randrange(sizes.users))),
                     check=lambda d: d["totalResults"] == 1)  # type: ignore[index]
        for _ in range(sizes.lookups)])


def run_roster(kind: str, sizes: Sizes) -> Target:
    """Serve Roster on a fresh ``kind`` database and run every scenario."""
    print(f"== Roster on {kind}", flush=True)
    with serve_roster(kind) as (port, headers):
        target = Target(f"roster/{kind}", port, headers, sizes)
        roster_scenarios(target)
    return target


def run_ceiling(sizes: Sizes) -> Target:
    """Serve bench/ceiling_app.py on a fresh SQLite file and measure it."""
    tmp = Path(tempfile.mkdtemp(prefix="scim-bench-ceiling-"))
    try:
        prom = tmp / "prometheus"
        prom.mkdir()
        env = clean_env(CEILING_DB=str(tmp / "ceiling.db"), PROMETHEUS_MULTIPROC_DIR=str(prom),
                        PYTHONPATH=str(ROOT / "bench"))
        print("== ceiling (bare Flask + one SQLite statement)", flush=True)
        with gunicorn("ceiling_app:create_app()", env, tmp / "gunicorn.log") as port:
            target = Target("ceiling", port, {"Content-Type": "application/json"}, sizes)
            ceiling_scenarios(target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def summary(ceilings: list[Target], rosters: list[Target]) -> None:
    """Ratios against the ceiling and the issue's 2x checks.

    The ceiling is measured before and after each Roster database; each Roster is compared
    with the mean of the two measurements around it, so a machine whose speed drifts during
    the run (a shared VM) skews the ratios less.
    """
    print("\n== summary (targets: lookups >= 60 % and creates >= 50 % of the ceiling on "
          "SQLite; big-group single change and last page within 2x)")
    for index, t in enumerate(rosters):
        r, around = t.results, [c.results for c in ceilings[index:index + 2]]
        rps = {key: _mean([c[key].rps for c in around]) for key in ("create", "lookup")}
        inserts = " / ".join(f"{c['create'].rps:.1f}" for c in around)
        selects = " / ".join(f"{c['lookup'].rps:.1f}" for c in around)
        print(f"  {t.label}: (ceiling insert {inserts}, select {selects} req/s before / after)")
        print(f"    create  {r['create'].rps:8.1f} req/s = "
              f"{100 * r['create'].rps / rps['create']:5.1f} % of ceiling insert "
              f"({rps['create']:.1f})")
        for key in ("lookup_username", "lookup_external"):
            print(f"    {key:<15} {r[key].rps:8.1f} req/s = "
                  f"{100 * r[key].rps / rps['lookup']:5.1f} % of ceiling select "
                  f"({rps['lookup']:.1f})")
        for key, base, what in (("create", "create", "create"),
                                ("lookup_username", "lookup", "lookup_username"),
                                ("lookup_external", "lookup", "lookup_external")):
            cpu = [c[base].cpu_ms for c in around]
            mine = r[key].cpu_ms
            if mine and all(cpu):
                theirs = _mean(cpu)
                print(f"    {what:<15} server CPU {mine:5.2f} ms/req vs ceiling {theirs:5.2f} "
                      f"= {100 * theirs / mine:5.1f} % of the ceiling's CPU efficiency")
        for slow, fast, what in (("single_big", "single_small", "single member big/small"),
                                 ("cursor_last", "cursor_first", "cursor last/first page"),
                                 ("index_last", "index_first", "index last/first page")):
            print(f"    {what:<28} p50 ratio {r[slow].pct(50) / r[fast].pct(50):5.2f}x  "
                  f"(p50 {r[slow].pct(50):.1f} vs {r[fast].pct(50):.1f} ms)")
        for name, value in t.facts.items():
            print(f"    {name}: {value}")


def main() -> None:
    """Run the ceiling, then Roster on each database with the ceiling again after each,
    and print the comparison."""
    sizes = Sizes.from_env("--full" in sys.argv[1:] or os.environ.get("SCIM_BENCH_FULL") == "1")
    print(f"scim_bench: {sizes} concurrency {CONCURRENCY}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    ceilings = [run_ceiling(sizes)]
    rosters: list[Target] = []
    for kind in (k for k in sizes.dbs if k):
        rosters.append(run_roster(kind, sizes))
        ceilings.append(run_ceiling(sizes))
    summary(ceilings, rosters)
    print(f"load average at the end {os.getloadavg()[0]:.1f} (other work on the machine "
          f"skews every figure)")


if __name__ == "__main__":
    main()
