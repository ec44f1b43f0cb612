"""Two transactions re-evaluating the same user at once: one waits, no duplicate grant."""

from __future__ import annotations

import threading

from app.mapping.evaluation import reevaluate_users
from app.models import Membership
from tests.conftest import OPERATOR, rows

RULES = {"rules": [
    {"id": "a", "priority": 2, "role": "buyer", "unit": "Engineering", "match": {"group": "A"}},
    {"id": "b", "priority": 1, "role": "buyer", "unit": "Engineering", "match": {"group": "B"}},
]}


def test_concurrent_membership_changes_for_one_user(world):
    """Joining two groups in two concurrent transactions gives one grant and no error."""
    alice = world.user("alice")
    group_a, group_b = world.group("A"), world.group("B")
    world.apply(RULES)
    evaluated, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def join(group_id: str, hold: bool) -> None:
        try:
            with world.db.transaction() as s:
                s.add(Membership(group_id=group_id, user_id=alice))
                s.flush()
                reevaluate_users(s, world.org_id, [alice], OPERATOR)
                if hold:
                    evaluated.set()
                    release.wait(10)
        except BaseException as exc:  # reported below, with the thread's exception
            errors.append(exc)
            evaluated.set()

    first = threading.Thread(target=join, args=(group_a, True))
    first.start()
    assert evaluated.wait(10)
    second = threading.Thread(target=join, args=(group_b, False))
    second.start()
    second.join(0.5)            # it must be waiting for the first transaction
    release.set()
    first.join(10)
    second.join(10)
    assert errors == []
    assert [(r.source,) for r in rows(world.db, "SELECT source FROM grants")] == [("rule:a",)]
    assert rows(world.db, "SELECT count(*) AS n FROM memberships")[0].n == 2
