"""One re-evaluation per write, its users locked up front: the lock order of write
transactions, which keeps concurrent group writes from deadlocking on PostgreSQL.

Every write transaction takes its row locks in this order, and never goes back to an
earlier step (README, section "SCIM", the bullet on versions and locks):

0. the directory's row FOR SHARE (``app.directory.hold``: a SCIM unit of work's first
   lock, an SSO login's through a connection bound to it, an operator's reactivation or
   batch restore too), which only an enable or disable (FOR NO KEY UPDATE, then the users
   it deprovisions) conflicts with; then the organization's mapping lock, shared
   (``app.mapping.locks``, waited for at most ``[mapping] write_wait_ms``; a rule-set apply
   takes it exclusively before anything else);
1. the SCIM token's row, when ``touch`` stamps it (first lock after those);
2. the one group row a group write changes (``get_group(for_update=True)``);
3. the user rows whose grants it re-evaluates: a user write holds its own row; a group
   write locks every user it may re-evaluate, and every user whose membership it adds or
   removes, or whose group it renames or deletes (even when nothing is to be evaluated:
   it bumps their ``groups_version`` at its end, app/directory/versions.py), at once, in
   one statement sorted by id (``lock_users``), before it changes a membership; a
   deprovisioning holds its user's row before it revokes sessions, and an SSO login holds
   its user's row FOR SHARE (after its JIT group locks) before it opens a session, so
   neither misses the other;
4. rows reached only through locks already held: the group's memberships, the users'
   grants, units, and audit and outbox inserts; and the users whose grants an evaluation
   changed, their ``access_version`` bumped in one UPDATE per batch (app/directory/
   versions.py) on rows its ``diff_batch`` locked in step 3 (a rule-set apply and a unit
   added for a rule, which hold the mapping lock exclusively, lock each batch there too,
   in id order, batch after batch): it never waits;
5. the organization's audit chain head, at COMMIT (``app.audit.log.append_pending``);
   after it, a member's SCIM delete, restore or display change moves its groups' member
   versions (``group_member_versions``, app/directory/versions.py) in one statement in
   group id order: rows no group write locks (a group's delete removes its own, holding
   all its members, so no member's write is in flight), taken by holders of the chain
   head, one at a time, so they never wait in a cycle. Such a write never locks a group's
   own row.

Why no deadlock: a transaction only ever waits for a lock later in this order than every
lock it holds (within step 3, a higher user id: the statement locks in id order), so a
chain of waits only moves forward in the order and can never close into a cycle. The
evaluation at the end re-locks only users already held, so it never waits. Membership
inserts take KEY SHARE on a user (their foreign-key check), which FOR NO KEY UPDATE does
not block. An SSO login's JIT group sync (app/sso/login.py) locks the groups it may change
(in id order) before it writes its user, for the same reason.

Before this, a group PUT re-evaluated its removed members, then its added ones (then a
rename's members), each pass locking its own sorted set: two PUTs sharing users locked
them in different orders and one was chosen as a deadlock victim (audit finding F4).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.audit import Actor
from app.mapping.evaluation import (
    Summary,
    evaluate_users,
    evaluation_policy,
)
from app.mapping.rules import Policy
from app.models import User
from app.sql import among, fetch

# FOR NO KEY UPDATE as everywhere users are locked (app/directory/users.py); ORDER BY makes
# PostgreSQL lock the rows in id order (its LockRows step runs after the sort).
_LOCK_USERS = (select(User.id)
               .where(among(User.id), User.organization_id == bindparam("organization_id"))
               .order_by(User.id).with_for_update(key_share=True))


@dataclass
class Reevaluation:
    """The users one write may re-evaluate (locked) and those it changed (evaluated last)."""

    organization_id: str
    policy: Policy | None  # None: evaluating these users can change nothing
    locked: frozenset[str]
    changed: set[str] = field(default_factory=set)
    # Users to evaluate whose ``groups`` (as SCIM shows them) did not change: the members
    # of a group whose externalId changed, which rules may match on.
    rematched: set[str] = field(default_factory=set)

    def note(self, user_ids: Iterable[str]) -> None:
        """These users' memberships or groups changed: evaluate them in ``finish``."""
        self.changed.update(user_ids)

    def note_rematch(self, user_ids: Iterable[str]) -> None:
        """What rules see of these users' groups changed, not what SCIM shows: evaluate
        them in ``finish`` (their version moves only if their grants change)."""
        self.rematched.update(user_ids)


def lock_users(session: Session, organization_id: str, user_ids: Iterable[str],
               members: Iterable[str] = ()) -> Reevaluation:
    """Decide once whether ``user_ids`` need evaluating and, if so, lock them all now,
    together with ``members``, the users whose memberships the write adds or removes, which
    are locked whatever the policy.

    A SCIM DELETE or a restore of a user holds that user's row while it hides or shows its
    memberships and announces it (app/lifecycle/visibility.py). A membership written under
    the member's lock is then either seen by it or written after it committed, and checked
    after the lock (``app.directory.groups``): a deleted user is not added, as if the DELETE
    had come first, and a restore does not announce a membership being removed.
    """
    ids = sorted(set(user_ids))
    policy = evaluation_policy(session, organization_id, ids)
    locked = sorted(set(ids) | set(members)) if policy is not None else sorted(set(members))
    connection = session.connection()
    # SQLite has one writer at a time and no row locks: nothing to order there.
    if locked and connection.dialect.name == "postgresql":
        fetch(connection, _LOCK_USERS, {"ids": locked, "organization_id": organization_id})
    return Reevaluation(organization_id, policy, frozenset(ids))


def finish(session: Session, evaluation: Reevaluation, actor: Actor,
           settled: Collection[str] = ()) -> Summary:
    """Evaluate the changed users once, under the locks ``lock_users`` took; ``settled``:
    those whose version the write moved already (their ``groups_version``), so a change of
    their grants does not move it again (app/mapping/evaluation.py ``run``)."""
    ids = evaluation.changed | evaluation.rematched
    if evaluation.policy is None or not ids:
        return Summary()
    # A changed user outside the locked set would be locked here, late; callers lock a
    # superset of what they change, so this only re-locks rows already held.
    return evaluate_users(session, evaluation.organization_id, sorted(ids),
                          evaluation.policy, actor, settled)

