"""Mapping benchmark (issue 6): re-evaluation after a rule change, cost of a membership change.

Builds an organization of MAPPING_BENCH_USERS users (10,000), 200 groups and 50 rules on a
throwaway SQLite file (or on MAPPING_BENCH_DB_URL, e.g. a PostgreSQL database), applies the
rules, then measures:

- one rule change (a parameter override; then a rule's unit moved) applied through
  apply_ruleset: one batched pass over every user inside a savepoint (the loss guard
  watches it), plus the grant writes with their audit and outbox rows;
- a re-evaluation of the whole organization when nothing changed (the pure read cost);
- one membership change through the SCIM group service (add_members -> reevaluate_users):
  SQL statements and time, in a 10-member group and in a 10,000-member group of the big
  organization, and in an organization of 10 users. The statement counts must be equal.

Runs in well under the few minutes allowed on 2 busy cores; prints one line per figure.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event, insert

from app.audit import Actor
from app.db import Database, new_id, utcnow
from app.directory.directories import create_directory
from app.directory.groups import add_members, remove_members
from app.directory.organizations import add_unit, create_organization
from app.mapping.catalog import load_catalog
from app.mapping.evaluation import (
    diff_batch,
    load_context,
    organization_batches,
    reevaluate_organization,
)
from app.mapping.preview import apply_ruleset
from app.mapping.ruleset import check_against, parse_document
from app.mapping.storage import save_ruleset
from app.migrate import upgrade
from app.models import Grant, Group, Membership, Organization, User
from app.settings import ROOT

USERS = int(os.environ.get("MAPPING_BENCH_USERS", 10_000))
GROUPS = 200
RULES = 50
DEPARTMENTS = [f"Dept{i:02d}" for i in range(20)]
CITIES = ["Tokyo", "Berlin", "Paris", "Austin", "Lyon"]
ACTOR = Actor(type="operator", id="bench")
REPEAT = 5


def log(label: str, value: str) -> None:
    """One figure per line."""
    print(f"{label:<62} {value}", flush=True)


@contextmanager
def counting(db: Database) -> Iterator[list[str]]:
    """Collect the SQL statements run inside the block."""
    seen: list[str] = []

    def _count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", _count)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", _count)


def rules_document() -> dict[str, Any]:
    """50 rules: group globs and names, attributes, combinations, derived units."""
    rules: list[dict[str, Any]] = []
    for i in range(20):
        rules.append({"id": f"dept-buyers-{i}", "priority": 10 + i, "role": "buyer",
                      "unit": f"Departments/{DEPARTMENTS[i]}",
                      "match": {"group": f"Buyers-{i:03d}"},
                      "parameters": {"spending_limit": {"amount": str(1000 + i * 100),
                                                        "currency": "EUR"}}})
    for i, city in enumerate(CITIES):
        rules.append({"id": f"city-{city}", "priority": 50, "role": "technician",
                      "unit": f"Locations/{city}", "create_unit": True,
                      "unit_kind": "location",
                      "match": {"all": [{"attribute": "locality", "value": city},
                                        {"group": "Techs-*", "match": "glob"}]}})
        rules.append({"id": f"city-approvers-{city}", "priority": 40 + i, "role": "approver",
                      "unit": f"Locations/{city}", "create_unit": True,
                      "unit_kind": "location",
                      "match": {"any": [{"group": f"Approvers-{city}"},
                                        {"attribute": "title", "value": f"{city} .*Manager",
                                         "match": "regex"}]}})
    for i in range(15):
        rules.append({"id": f"team-{i}", "priority": i, "role": "quote_only",
                      "unit_from": {"attribute": "department", "under": "Departments"},
                      "create_unit": True,
                      "match": {"all": [{"group": f"Team-{i:03d}-*", "match": "glob"},
                                        {"not": {"attribute": "userType",
                                                 "value": "Contractor"}}]}})
    for i in range(RULES - len(rules)):
        rules.append({"id": f"finance-{i}", "priority": 5, "role": "finance",
                      "unit": "Departments",
                      "match": {"all": [{"attribute": "costCenter", "value": f"CC-{i}*",
                                         "match": "glob"},
                                        {"group": "Finance"}]}})
    assert len(rules) == RULES
    return {"policy": {"default_role": "quote_only", "default_unit": "Departments",
                       "on_loss": "nothing"}, "rules": rules}


def group_names() -> list[str]:
    """200 group names the rules refer to (and some they do not)."""
    names = [f"Buyers-{i:03d}" for i in range(20)] + [f"Approvers-{c}" for c in CITIES]
    names += [f"Techs-{i:03d}" for i in range(10)] + ["Finance"]
    names += [f"Team-{i:03d}-{j}" for i in range(15) for j in range(6)]
    names += [f"Other-{i:03d}" for i in range(GROUPS - len(names) - 2)]
    return [*names, "Small", "All Staff"]


def build(db: Database, slug: str, users: int) -> tuple[str, dict[str, str], str]:
    """An organization with units, users, 200 groups and memberships; (org, groups, probe)."""
    rnd = random.Random(slug)
    with db.transaction() as s:
        org = create_organization(s, slug, slug, load_catalog(ROOT / "config" / "roles.toml"),
                                  ACTOR)
        directory = create_directory(s, org, "okta", "okta", ACTOR)
        add_unit(s, org, "Departments", "department", None, ACTOR)
        for name in DEPARTMENTS:
            add_unit(s, org, name, "department", "Departments", ACTOR)
        add_unit(s, org, "Locations", "location", None, ACTOR)
        for city in CITIES:
            add_unit(s, org, city, "location", "Locations", ACTOR)
        org_id, dir_id = org.id, directory.id
    now = utcnow()
    user_rows = [{
        "id": new_id(), "directory_id": dir_id, "organization_id": org_id,
        "user_name": f"user{i}@{slug}.example", "active": True, "status": "active",
        "department": rnd.choice(DEPARTMENTS), "cost_center": f"CC-{rnd.randrange(100)}",
        "title": f"{rnd.choice(CITIES)} {rnd.choice(['Buyer', 'Manager', 'Engineer'])}",
        "user_type": rnd.choice(["Employee"] * 9 + ["Contractor"]),
        "addresses": [{"type": "work", "locality": rnd.choice(CITIES), "country": "XX"}],
        "created_at": now, "updated_at": now, "version": 1,
    } for i in range(users)]
    # The probe joins and leaves groups below; it is identical in every organization.
    user_rows.append({**user_rows[0], "id": new_id(), "user_name": f"probe@{slug}.example",
                      "department": "Dept00", "title": "Probe", "cost_center": "CC-X",
                      "user_type": "Employee", "addresses": []})
    groups = {name: new_id() for name in group_names()}
    members: list[dict[str, Any]] = []
    ids = [u["id"] for u in user_rows[:-1]]
    for uid in ids:
        for name in rnd.sample(list(groups)[:-2], 3):
            members.append({"group_id": groups[name], "user_id": uid, "created_at": now})
    members += [{"group_id": groups["All Staff"], "user_id": uid, "created_at": now}
                for uid in ids]
    members += [{"group_id": groups["Small"], "user_id": uid, "created_at": now}
                for uid in ids[:10]]
    with db.transaction() as s:
        s.execute(insert(User), user_rows)
        s.execute(insert(Group), [{"id": gid, "directory_id": dir_id, "organization_id": org_id,
                                   "display_name": name, "version": 1, "created_at": now,
                                   "updated_at": now} for name, gid in groups.items()])
        for start in range(0, len(members), 5000):
            s.execute(insert(Membership), members[start:start + 5000])
    return org_id, groups, user_rows[-1]["id"]


def store_and_seed(db: Database, org_id: str, doc: dict[str, Any]) -> int:
    """Store the rules, then insert the grants they give in bulk (setup only: no audit rows,
    which the real path writes one by one); returns the number of grants."""
    count = 0
    with db.transaction() as s:
        org = s.get(Organization, org_id)
        ctx = load_context(s, org)
        checked = check_against(parse_document(doc), ctx.roles, ctx.units)
        save_ruleset(s, org, checked)
        ctx.rules, ctx.policy = checked.rules, checked.policy
        for batch in organization_batches(s, org_id):
            rows = [{"id": new_id(), "organization_id": org_id, "user_id": diff.user.id,
                     "unit_id": want.unit_id, "role_id": ctx.role_ids[want.role],
                     "parameters": dict(want.parameters), "source": want.source,
                     "reason": {**want.reason, "unit_path": want.unit_path},
                     "created_at": utcnow()}
                    for diff in diff_batch(s, ctx, batch) for want in diff.added]
            assert all(r["unit_id"] for r in rows)
            s.execute(insert(Grant), rows)
            count += len(rows)
    return count


def apply(db: Database, org_id: str, doc: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Apply a rule set through the real path (forced); seconds and totals."""
    start = time.perf_counter()
    with db.transaction() as s:
        result = apply_ruleset(s, s.get(Organization, org_id), parse_document(doc), ACTOR,
                               max_loss_share=1.0, force=True)
    return time.perf_counter() - start, result.totals()


def membership_change(db: Database, group_id: str, user_id: str) -> tuple[int, float]:
    """Add one member then remove it (two SCIM-service transactions): statements, seconds."""
    timings, counts = [], []
    for _ in range(REPEAT):
        for op in (add_members, remove_members):
            with counting(db) as seen:
                start = time.perf_counter()
                with db.transaction() as s:
                    op(s, s.get(Group, group_id), [user_id], ACTOR)
                timings.append(time.perf_counter() - start)
            counts.append(len(seen))
    return max(counts), statistics.median(timings)


def timed(label: str, fn: Callable[[], Any]) -> Any:
    """Run and log the seconds taken."""
    start = time.perf_counter()
    result = fn()
    log(label, f"{time.perf_counter() - start:.2f} s")
    return result


def main() -> None:
    """Build, apply, change one rule, change memberships; print the figures."""
    tmp = tempfile.mkdtemp(prefix="roster-mapping-bench-")
    url = os.environ.get("MAPPING_BENCH_DB_URL") or f"sqlite:///{tmp}/bench.db"
    upgrade(url)
    db = Database(url)
    log("database", db.dialect)
    big_org, big_groups, big_probe = timed(
        f"build: {USERS} users, {GROUPS} groups, 3 memberships each + All Staff",
        lambda: build(db, "big", USERS))
    small_org, small_groups, small_probe = build(db, "small", 10)
    doc = rules_document()
    grants = timed(f"setup: store {RULES} rules, bulk-insert their grants",
                   lambda: store_and_seed(db, big_org, doc))
    log("grants held in the 10,000-user organization", str(grants))
    store_and_seed(db, small_org, doc)

    def noop() -> dict[str, Any]:
        with db.transaction() as s:
            return reevaluate_organization(s, s.get(Organization, big_org), ACTOR).as_dict()

    summary = timed(f"re-evaluate {USERS} users, nothing to change (batches of 500)", noop)
    assert summary["added"] == summary["removed"] == summary["updated"] == 0, summary
    changed = dict(doc, rules=[dict(doc["rules"][0], parameters={
        "spending_limit": {"amount": "7777", "currency": "EUR"}}), *doc["rules"][1:]])
    seconds, totals = apply(db, big_org, changed)
    log("one rule change (parameter override): apply_ruleset, all users",
        f"{seconds:.2f} s ({totals['grants_updated']} grants updated)")
    moved = dict(doc, rules=[dict(doc["rules"][1], unit="Departments/Dept19"),
                             *[r for i, r in enumerate(doc["rules"]) if i != 1]])
    seconds, totals = apply(db, big_org, moved)
    log("one rule change (unit moved): apply_ruleset, all users",
        f"{seconds:.2f} s ({totals['grants_added']} added, {totals['grants_removed']} removed)")
    for label, groups, name, probe in (
        ("10-member group (no rule), 10,000-user org", big_groups, "Small", big_probe),
        ("10,000-member group (no rule), 10,000-user org", big_groups, "All Staff", big_probe),
        ("rule group Buyers-000, 10,000-user org", big_groups, "Buyers-000", big_probe),
        ("rule group Buyers-000, 10-user org", small_groups, "Buyers-000", small_probe),
    ):
        statements, seconds = membership_change(db, groups[name], probe)
        log(f"membership add/remove: {label}", f"{statements} statements, "
            f"{seconds * 1000:.1f} ms median")
    db.dispose()


if __name__ == "__main__":
    main()
