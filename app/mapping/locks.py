"""The organization's mapping lock: a rule-set apply against writes that evaluate grants.

An apply (``app.mapping.preview.apply_ruleset``) re-evaluates every committed user under
the new rules before it commits. A SCIM or SSO write of the same organization running
meanwhile evaluates its users under the old rules (the apply has not committed), and the
apply never sees users committed after its batches read them: they would keep grants of
rules that no longer exist until they change again. So the apply holds the organization's
lock exclusively, and every write that may evaluate grants of the organization's users
holds it shared, until its transaction ends (PostgreSQL advisory transaction locks;
SQLite has one writer at a time, so neither takes anything there).

Lock order (``app.mapping.reevaluation``): after the directory's row (held FOR SHARE by a
SCIM write or an SSO login first of all; only an enable or disable conflicts with it, and
neither takes this lock) and before every other row lock (the SCIM token's stamp, the
group row, the user rows).
A transaction holding it shared never waits for it again, and the apply takes its row
locks only once it holds it: no cycle can close through it. Writers of one organization
do not wait for each other here; they wait only while an apply runs (or is queued: the
shared request queues behind a waiting exclusive one). The cost on the SCIM write path:
one ``SELECT pg_advisory_xact_lock_shared(...)`` per write transaction on PostgreSQL.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import BigInteger, bindparam, func, select
from sqlalchemy.orm import Session, SessionTransaction

_KEY = bindparam("b_key", type_=BigInteger)
_SHARED = select(func.pg_advisory_xact_lock_shared(_KEY))
_EXCLUSIVE = select(func.pg_advisory_xact_lock(_KEY))
# session.info key: {organization id: (exclusive, the transaction that took the lock)}.
_HELD = "roster.mapping.locks_held"


def share_mapping(session: Session, organization_id: str) -> None:
    """Hold the organization's mapping lock shared until the transaction ends (a write that
    evaluates grants: no rule-set apply runs meanwhile, nor starts before it commits)."""
    _hold(session, organization_id, exclusive=False)


def own_mapping(session: Session, organization_id: str) -> None:
    """Hold the organization's mapping lock exclusively until the transaction ends (a
    rule-set apply: no write evaluates the organization's grants meanwhile)."""
    _hold(session, organization_id, exclusive=True)


def _hold(session: Session, organization_id: str, *, exclusive: bool) -> None:
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return  # SQLite: this transaction holds (or will take) the database's only write lock
    held: dict[str, tuple[bool, SessionTransaction]] = session.info.setdefault(_HELD, {})
    known = held.get(organization_id)
    # A lock taken inside a savepoint that rolled back is gone: taken again then.
    if known is not None and known[1].is_active and (known[0] or not exclusive):
        return
    connection.execute(_EXCLUSIVE if exclusive else _SHARED,
                       {"b_key": mapping_lock_key(organization_id)})
    current = session.get_nested_transaction() or session.get_transaction()
    assert current is not None
    held[organization_id] = (exclusive, current)


def mapping_lock_key(organization_id: str) -> int:
    """The organization's advisory-lock key: a signed 64-bit hash in the mapping's namespace."""
    digest = hashlib.blake2b(organization_id.encode(), digest_size=8, person=b"roster.mapping")
    return int.from_bytes(digest.digest(), "big", signed=True)
