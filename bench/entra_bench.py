"""Entra-style provisioning cycle (issue 5): Roster under gunicorn, default-dialect traffic.

The cycle replays what Entra ID's provisioning job sends for one tenant (Microsoft Learn,
"Tutorial - Develop and plan provisioning for a SCIM endpoint"): for each user a
query-by-userName then a create; for each group a query by displayName
(excludedAttributes=members), a create with the Microsoft schema URN and an Add of its
members; then an update pass of default-dialect PATCHes (capitalised ops, "True"/"False",
emails[type eq "work"].value, manager Add [{"value": id}]) and group PATCHes (Replace
displayName, Remove members with a value list, Add members). The Entra gallery expects at
least 25 requests per second per tenant.

It runs twice on SQLite, with the flight recorder on and off, to measure what recording
every request costs, and once on PostgreSQL.

  ENTRA_BENCH_USERS=2000  ENTRA_BENCH_GROUPS=50  ENTRA_BENCH_CONCURRENCY=4
  ENTRA_BENCH_SECONDS=180 (time bound per phase)
  ENTRA_BENCH_RUNS=sqlite,sqlite-norecorder,postgresql
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from scim_bench import (
    CORE_GROUP,
    CORE_USER,
    ENTERPRISE,
    ROOT,
    ROSTER,
    Client,
    Result,
    Task,
    clean_env,
    line,
    patch,
    quoted,
    request_task,
    run_load,
    serve_roster,
)

USERS = int(os.environ.get("ENTRA_BENCH_USERS", 2000))
GROUPS = int(os.environ.get("ENTRA_BENCH_GROUPS", 50))
CONCURRENCY = int(os.environ.get("ENTRA_BENCH_CONCURRENCY", 4))
SECONDS = float(os.environ.get("ENTRA_BENCH_SECONDS", 180))
RUNS = tuple(os.environ.get("ENTRA_BENCH_RUNS",
                            "sqlite,sqlite-norecorder,postgresql").split(","))
MS_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"
MANAGER = f"{ENTERPRISE}:manager"


def upn(i: int) -> str:
    """The userPrincipalName Entra maps to userName."""
    return f"entra.user{i:05d}@contoso.com"


def create_user(i: int, ids: dict[int, str]) -> Task:
    """Query by userName (no match), then create: two requests, as Entra sends them."""
    body = {"schemas": [CORE_USER, ENTERPRISE], "externalId": str(uuid.uuid4()),
            "userName": upn(i), "active": True,
            "emails": [{"primary": True, "type": "work", "value": upn(i)}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": f"Given{i} Family{i}", "familyName": f"Family{i}",
                     "givenName": f"Given{i}"},
            "roles": [], ENTERPRISE: {"department": "Sales", "employeeNumber": str(i)}}

    def task(client: Client, record: Callable[..., None]) -> None:
        query = quoted(f'userName eq "{upn(i)}"')
        status, data, took = client.call("GET", f"/scim/v2/Users?filter={query}")
        record("query user", status, data, took, (200,))
        status, data, took = client.call("POST", "/scim/v2/Users", body)
        record("create user", status, data, took, (201,))
        if status == 201 and isinstance(data, dict):
            ids[i] = data["id"]
    return task


def create_group(g: int, members: list[str], groups: dict[int, str]) -> Task:
    """Query by displayName, create with the Microsoft URN and no members, Add members."""
    name = f"Entra Group {g:02d}"

    def task(client: Client, record: Callable[..., None]) -> None:
        query = f"displayName eq \"{name}\""
        status, data, took = client.call(
            "GET", f"/scim/v2/Groups?excludedAttributes=members&filter={quoted(query)}")
        record("query group", status, data, took, (200,))
        status, data, took = client.call("POST", "/scim/v2/Groups", {
            "schemas": [CORE_GROUP, MS_GROUP], "externalId": str(uuid.uuid4()),
            "displayName": name, "meta": {"resourceType": "Group"}})
        record("create group", status, data, took, (201,))
        if status != 201 or not isinstance(data, dict):
            return
        groups[g] = data["id"]
        status, data, took = client.call("PATCH", f"/scim/v2/Groups/{data['id']}", patch(
            {"op": "Add", "path": "members", "value": [{"$ref": None, "value": m}
                                                       for m in members]}))
        record("add members", status, data, took, (200, 204))
    return task


def update_user(i: int, user_id: str, manager_id: str) -> Task:
    """One default-dialect PATCH touching the attributes Entra updates most."""
    return request_task("PATCH", f"/scim/v2/Users/{user_id}", patch(
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": f"new.{upn(i)}"},
        {"op": "Replace", "path": "name.familyName", "value": f"Renamed{i}"},
        {"op": "Replace", "path": "active", "value": "False" if i % 10 == 0 else "True"},
        {"op": "Add", "path": f"{ENTERPRISE}:department", "value": "Finance"},
        {"op": "Add", "path": MANAGER, "value": [{"value": manager_id}]},
    ), ok=(200, 204))


def update_group(g: int, group_id: str, removed: list[str], added: list[str]) -> Task:
    """Rename, then Remove members with a value list and Add others (default dialect)."""
    return request_task("PATCH", f"/scim/v2/Groups/{group_id}", patch(
        {"op": "Replace", "path": "displayName", "value": f"Entra Group {g:02d} renamed"},
        {"op": "Remove", "path": "members", "value": [{"value": u} for u in removed]},
        {"op": "Add", "path": "members", "value": [{"value": u} for u in added]},
    ), ok=(200, 204))


def cycle(port: int, headers: dict[str, str]) -> list[Result]:
    """Create then update; returns one result per phase."""
    ids: dict[int, str] = {}
    groups: dict[int, str] = {}

    def phase(name: str, tasks: list[Task]) -> Result:
        result = run_load(name, tasks, port, headers, SECONDS, CONCURRENCY)
        print(f"    {line(result)}", flush=True)
        return result

    results = [phase(f"create {USERS} users (query + POST)",
                     [create_user(i, ids) for i in range(USERS)])]
    users = [ids[i] for i in sorted(ids)]
    size = max(1, len(users) // GROUPS)
    results.append(phase(f"create {GROUPS} groups (query + POST + Add)", [
        create_group(g, users[g * size:(g + 1) * size], groups) for g in range(GROUPS)]))
    results.append(phase(f"update {len(users)} users (PATCH)", [
        update_user(i, user_id, users[(i + 1) % len(users)])
        for i, user_id in enumerate(users)]))
    results.append(phase(f"update {len(groups)} groups (PATCH)", [
        update_group(g, gid, users[g * size:g * size + 5],
                     users[((g + 1) * size) % len(users):((g + 1) * size) % len(users) + 5])
        for g, gid in sorted(groups.items())]))
    return results


def recorder_overhead(rounds: int = 20, batch: int = 25) -> None:
    """In-process: the same PATCH and GET with the recorder on and off, interleaved.

    Interleaving batches keeps a busy machine's noise out of the ratio; what is left is the
    recorder's own work (redaction, one INSERT, the counter upsert, pruning every N).
    """
    import time

    sys.path.insert(0, str(ROOT))
    from app import create_app
    from app.migrate import upgrade

    tmp = Path(tempfile.mkdtemp(prefix="entra-bench-recorder-"))
    try:
        url = f"sqlite:///{tmp / 'roster.db'}"
        upgrade(url)
        env = clean_env(ROSTER_DATABASE__URL=url,
                        ROSTER_SIGNING__DEV_KEY_FILE=str(tmp / "signing_key.pem"))
        out = subprocess.run([ROSTER, "demo"], cwd=ROOT, env=env, check=True,
                             capture_output=True, text=True).stdout
        token = re.search(r"SCIM token:\s+(\S+)", out).group(1)  # type: ignore[union-attr]
        headers = {"Authorization": f"Bearer {token}"}
        apps = {on: create_app({"database": {"url": url}, "logging": {"level": "WARNING"},
                                "recorder": {"enabled": on}}).test_client()
                for on in (True, False)}
        user = apps[False].post("/scim/v2/Users", headers=headers, json={
            "schemas": [CORE_USER], "userName": "overhead@contoso.com"}).get_json()["id"]
        body = patch({"op": "Replace", "path": "active", "value": "True"},
                     {"op": "Replace", "path": "name.familyName", "value": "X"})
        spent = {True: 0.0, False: 0.0}
        for _ in range(rounds):
            for on, client in apps.items():
                started = time.perf_counter()
                for _ in range(batch):
                    client.patch(f"/scim/v2/Users/{user}", headers=headers, json=body)
                    client.get(f"/scim/v2/Users/{user}", headers=headers)
                spent[on] += time.perf_counter() - started
        per = {on: 1000 * spent[on] / (rounds * batch * 2) for on in spent}
        print(f"== flight recorder, in process on SQLite: {per[False]:.2f} ms per request off, "
              f"{per[True]:.2f} ms on: +{per[True] - per[False]:.2f} ms "
              f"({100 * (per[True] / per[False] - 1):.0f} %)", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    """Run the cycle on each configured database and print requests per second."""
    print(f"entra_bench: {USERS} users, {GROUPS} groups, concurrency {CONCURRENCY}, "
          f"{os.cpu_count()} cores", flush=True)
    totals: dict[str, float] = {}
    for run in RUNS:
        kind, _, option = run.partition("-")
        recorder = option != "norecorder"
        print(f"== Roster on {kind}, flight recorder {'on' if recorder else 'off'}", flush=True)
        with serve_roster(kind, ROSTER_RECORDER__ENABLED="true" if recorder else "false") \
                as (port, headers):
            results = cycle(port, headers)
        requests = sum(len(r.latencies) for r in results)
        seconds = sum(r.seconds for r in results)
        errors = sum(r.errors for r in results)
        totals[run] = requests / seconds
        print(f"  whole cycle: {requests} requests in {seconds:.1f} s = "
              f"{requests / seconds:.1f} req/s, {errors} errors (Entra gallery: >= 25 req/s)",
              flush=True)
    if "sqlite" in totals and "sqlite-norecorder" in totals:
        cost = 100 * (1 - totals["sqlite"] / totals["sqlite-norecorder"])
        print(f"== flight recorder cost on SQLite under gunicorn: {cost:.1f} % of throughput")
    recorder_overhead()


if __name__ == "__main__":
    main()
