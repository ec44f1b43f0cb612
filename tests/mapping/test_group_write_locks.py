"""Concurrent group writes with mapping rules (audit F4): no deadlock, exact end state.

Eight clients write eight groups with overlapping members at once, over real HTTP. Each
write re-evaluates the grants of the users it touches, under their row locks; on
PostgreSQL those used to be taken in two or three passes per request (removed users, then
added ones, then a rename's members), so two requests locked shared users in opposite
orders and one of them got a deadlock (503). Every request must now succeed, and the
memberships and grants must be exactly what the requests asked for.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import rows
from tests.mapping.conftest import World
from tests.scim.support import CORE_GROUP, PATCH_OP, SCIM, at_once, http_call, live_server

GROUPS, USERS, ROUNDS = 8, 16, 6
RULES = {"policy": {"on_loss": "nothing"}, "rules": [
    {"id": "zero", "priority": 20, "role": "technician", "unit": "Engineering/Tokyo",
     "match": {"group": "Team-0*", "match": "glob"}},
    {"id": "team", "priority": 10, "role": "buyer", "unit": "Engineering",
     "match": {"group": "Team-*", "match": "glob"}},
]}


def _send(url: str, token: str, method: str, path: str, body: dict[str, Any]) -> int:
    return http_call(url, token, method, path, body)[0]


def _name(group: int, round_: int) -> str:
    # Group 0 leaves and rejoins the rules' names from round to round: a rename that
    # changes its members' grants, written in the same request as their membership.
    prefix = "Team" if group or round_ % 2 == 0 else "Other"
    return f"{prefix}-{group}-r{round_}"


def _expected_grants(names: dict[str, str], members: dict[str, set[str]],
                     users: list[str]) -> dict[str, set[tuple[str, str]]]:
    out: dict[str, set[tuple[str, str]]] = {u: set() for u in users}
    for gid, ids in members.items():
        for uid in ids:
            if names[gid].startswith("Team-"):
                out[uid].add(("buyer", "Engineering"))
            if names[gid].startswith("Team-0"):
                out[uid].add(("technician", "Engineering/Tokyo"))
    return out


def _assert_state(world: World, names: dict[str, str], members: dict[str, set[str]],
                  users: list[str]) -> None:
    stored: dict[str, set[str]] = {gid: set() for gid in members}
    for r in rows(world.db, "SELECT group_id, user_id FROM memberships"):
        stored[r.group_id].add(r.user_id)
    assert stored == members
    assert {r.id: r.display_name for r in rows(world.db, "SELECT id, display_name FROM "
                                               "groups")} == names
    grants: dict[str, set[tuple[str, str]]] = {u: set() for u in users}
    for r in rows(world.db, "SELECT grants.user_id, roles.key, units.path FROM grants JOIN "
                  "roles ON roles.id = grants.role_id JOIN units ON units.id = grants.unit_id"):
        grants[r.user_id].add((r.key, r.path))
    assert grants == _expected_grants(names, members, users)
    assert rows(world.db, "SELECT count(*) AS n FROM grants")[0].n == sum(
        len(g) for g in grants.values()), "a duplicate grant"


def _setup(world: World, seed: int) -> tuple[random.Random, list[str], dict[str, str],
                                               dict[str, set[str]]]:
    rng = random.Random(seed)
    users = [world.user(f"u{i}@acme.example") for i in range(USERS)]
    members = {world.group(_name(g, 0), m := rng.sample(users, 8)): set(m)
               for g in range(GROUPS)}
    names = {gid: _name(g, 0) for g, gid in enumerate(members)}
    world.apply(RULES)
    _assert_state(world, names, members, users)
    return rng, users, names, members


# One group's write in one round: its body, after updating the expected names and members.
Write = Callable[[random.Random, list[str], dict[str, str], dict[str, set[str]], int, str,
                  int], dict[str, Any]]


def _rounds(app, world: World, seed: int, method: str, status: int, write: Write) -> None:
    """ROUNDS rounds of one ``method`` per group, all sent at once; after each, every answer
    is ``status`` and the memberships, names and grants are exactly as written."""
    rng, users, names, members = _setup(world, seed)
    token = world.tenant.token
    with live_server(app) as url:
        for round_ in range(1, ROUNDS + 1):
            calls = []
            for g, gid in enumerate(list(members)):
                body = write(rng, users, names, members, g, gid, round_)
                calls.append(lambda gid=gid, body=body: _send(url, token, method,
                                                               f"/Groups/{gid}", body))
            assert at_once(calls) == [status] * GROUPS, f"round {round_}"
            _assert_state(world, names, members, users)


def test_concurrent_group_puts_with_overlapping_members(app, world):
    """PUT /Groups/{id} on eight groups at once, each renaming and replacing its members
    with ten of sixteen users: all 200, memberships and grants exactly as sent."""
    def put(rng, users, names, members, g, gid, round_):
        wanted = rng.sample(users, 10)
        members[gid], names[gid] = set(wanted), _name(g, round_)
        return {"schemas": [CORE_GROUP], "displayName": _name(g, round_),
                "members": [{"value": u} for u in wanted]}

    _rounds(app, world, 4, "PUT", 200, put)


def test_concurrent_group_patches_adding_and_removing(app, world):
    """PATCH on eight groups at once, each adding three and removing three of sixteen users
    in one request (group 0 renamed too): all 204, memberships and grants as sent."""
    def patch(rng, users, names, members, g, gid, round_):
        picked = rng.sample(users, 6)
        add, remove = picked[:3], picked[3:]
        ops: list[dict[str, Any]] = [
            {"op": "add", "path": "members", "value": [{"value": u} for u in add]},
            {"op": "remove", "path": "members", "value": [{"value": u} for u in remove]}]
        if g == 0:
            ops.insert(0, {"op": "replace", "path": "displayName", "value": _name(g, round_)})
            names[gid] = _name(g, round_)
        members[gid] = (members[gid] | set(add)) - set(remove)
        return {"schemas": [PATCH_OP], "Operations": ops}

    _rounds(app, world, 7, "PATCH", 204, patch)


def test_group_puts_beside_user_patches(app, world):
    """Four group PUTs and four user PATCHes at once (a user write holds its own row, then
    re-evaluates it): all succeed, and the grants still follow the memberships."""
    rng, users, names, members = _setup(world, 11)
    token = world.tenant.token
    groups = list(members)
    with live_server(app) as url:
        for round_ in range(1, ROUNDS + 1):
            calls = []
            for g, gid in enumerate(groups[:4]):
                wanted = rng.sample(users, 10)
                body = {"schemas": [CORE_GROUP], "displayName": _name(g, round_),
                        "members": [{"value": u} for u in wanted]}
                calls.append(lambda gid=gid, body=body: _send(url, token, "PUT",
                                                               f"/Groups/{gid}", body))
                members[gid], names[gid] = set(wanted), _name(g, round_)
            for uid in rng.sample(users, 4):
                body = {"schemas": [PATCH_OP], "Operations": [
                    {"op": "replace", "path": "title", "value": f"t{round_}"}]}
                calls.append(lambda uid=uid, body=body: _send(url, token, "PATCH",
                                                               f"/Users/{uid}", body))
            assert at_once(calls) == [200] * 8, f"round {round_}"
            _assert_state(world, names, members, users)


class _Statements:
    """The SQL text and parameters of every statement run on an engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.seen: list[tuple[str, Any]] = []

    def __enter__(self) -> _Statements:
        sa.event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.seen.append((" ".join(statement.split()), parameters))


def _ids_in(parameters: Any, universe: set[str]) -> set[str]:
    found: set[str] = set()
    stack = [parameters]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, str) and item in universe:
            found.add(item)
    return found


def test_a_group_put_locks_all_its_users_once_before_changing_members(client, world, db,
                                                                       dialect):
    """PostgreSQL: one statement locks the removed, added and renamed group's users, in id
    order, before the first membership write; later locks only re-lock those rows."""
    if dialect != "postgresql":
        pytest.skip("SQLite has no row locks (one writer at a time)")
    users = [world.user(f"u{i}@acme.example") for i in range(8)]
    gid = world.group("Team-1", users[:5])
    world.apply(RULES)
    body = {"schemas": [CORE_GROUP], "displayName": "Team-1b",
            "members": [{"value": u} for u in users[3:]]}
    with _Statements(db.engine) as log:
        response = client.put(f"/scim/v2/Groups/{gid}", json=body, content_type=SCIM,
                              headers=world.tenant.headers)
        assert response.status_code == 200, response.get_json()
    locks = [(i, _ids_in(params, set(users))) for i, (sql, params) in enumerate(log.seen)
             if "FROM users" in sql and sql.endswith("FOR NO KEY UPDATE")]
    writes = [i for i, (sql, _) in enumerate(log.seen)
              if sql.startswith(("INSERT INTO memberships", "DELETE FROM memberships"))]
    assert locks
    assert writes
    first, locked = locks[0]
    assert "ORDER BY users.id" in log.seen[first][0]
    assert locked == set(users), "a rename re-evaluates old and new members: all eight"
    assert first < writes[0]
    assert all(ids <= locked for _, ids in locks[1:])
