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
SCIM write, an SSO login or an operator's reactivation first of all; only an enable or
disable conflicts with it, and neither takes this lock) and before every other row lock
(the SCIM token's stamp, the group row, the user rows).
A transaction holding it shared never waits for it again, and the apply takes its row
locks only once it holds it: no cycle can close through it. Writers of one organization
do not wait for each other here; they wait only while an apply runs (or is queued: the
shared request queues behind a waiting exclusive one). The cost on the SCIM write path:
no statement of its own: a SCIM write tries it as a column of the statement that holds its
directory's row (``try_shared_column``), after the row is locked; other writers send one
``SELECT pg_try_advisory_xact_lock_shared(...)``.

A write waits at most ``[mapping] write_wait_ms`` for it (``configure_write_wait``): an
apply of a 10,000-user organization holds it for 15-20 s (bench/README.md), and a SCIM write
waiting that long holds one of the worker's few request threads (SSO logins queue behind
it) while the IdP may give up on it anyway. Past the bound the statement fails with
lock_not_available (55P03: ``SET LOCAL lock_timeout`` covers advisory locks), the
transaction rolls back having written nothing, and SCIM, the API and SSO answer their 503
with ``Retry-After`` (app/db_errors.py: a transient error; :func:`retry_after`: a few times
the bound, not 1 s, which only brought the write back to wait again). The apply's own exclusive
request stays unbounded: it may legitimately wait for the writes in flight.
"""

from __future__ import annotations

import functools
import hashlib
import weakref
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Engine,
    bindparam,
    func,
    literal,
    select,
)
from sqlalchemy.orm import Session, SessionTransaction

from app.settings import load_settings

_KEY = bindparam("b_key", type_=BigInteger)
# The try first: one round trip when no apply runs or waits (it fails when an exclusive
# request is queued too, and the bounded wait below then queues behind it as before).
_TRY_SHARED = select(func.pg_try_advisory_xact_lock_shared(_KEY))
_SHARED = select(func.pg_advisory_xact_lock_shared(_KEY))
_EXCLUSIVE = select(func.pg_advisory_xact_lock(_KEY))
_LOCK_TIMEOUT = select(func.current_setting("lock_timeout"))
_SET_LOCK_TIMEOUT = select(func.set_config("lock_timeout", bindparam("b_value"), True))
# session.info key: {organization id: (exclusive, the transaction that took the lock)}.
_HELD = "roster.mapping.locks_held"
# Per database engine: an app's sessions wait as long as the settings that built the app say.
_wait_by_engine: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


def configure_write_wait(engine: Engine, wait_ms: int) -> None:
    """How long a write on ``engine`` waits for the mapping lock behind an apply (0: no
    bound); ``create_app`` sets it from ``[mapping] write_wait_ms``."""
    _wait_by_engine[engine] = wait_ms


@functools.cache
def _wait_from_environment() -> int:
    wait_ms: int = load_settings()["mapping"]["write_wait_ms"]
    return wait_ms


def write_wait_ms(connection: Connection) -> int:
    """The bound configured for the connection's engine, else the deployment's setting."""
    found = _wait_by_engine.get(connection.engine)
    return _wait_from_environment() if found is None else found


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
    params = {"b_key": mapping_lock_key(organization_id)}
    if exclusive:
        connection.execute(_EXCLUSIVE, params)
    elif not connection.execute(_TRY_SHARED, params).scalar():
        _wait_shared(connection, params, write_wait_ms(connection))
    _note(session, organization_id, exclusive)


def _note(session: Session, organization_id: str, exclusive: bool) -> None:
    held: dict[str, tuple[bool, SessionTransaction]] = session.info.setdefault(_HELD, {})
    current = session.get_nested_transaction() or session.get_transaction()
    assert current is not None
    held[organization_id] = (exclusive, current)


def try_shared_column(organization_id: str) -> ColumnElement[bool]:
    """PostgreSQL: the try of the organization's shared lock as a column, for a statement
    that locks a row first (app/directory/hold.py): one round trip for both. The caller
    passes what it returned to :func:`share_mapping_tried`."""
    return func.pg_try_advisory_xact_lock_shared(
        literal(mapping_lock_key(organization_id), BigInteger))


def share_mapping_tried(session: Session, organization_id: str, granted: bool) -> None:
    """:func:`share_mapping` once :func:`try_shared_column` was evaluated in this
    transaction: when the try failed, the bounded wait (as share_mapping's)."""
    if not granted:
        _wait_shared(session.connection(), {"b_key": mapping_lock_key(organization_id)},
                     write_wait_ms(session.connection()))
    _note(session, organization_id, False)


# A write refused behind an apply asks to be retried after RETRY_FACTOR times the bound it
# waited, within these limits: the apply held the lock all that wait and runs for seconds
# (15-20 s for 10,000 users), so a retry after 1 s would only wait, holding a request
# thread, and be refused again.
RETRY_FACTOR = 3
RETRY_AFTER_LIMITS = (5, 60)


def retry_after(engine: Engine, exc: BaseException) -> str:
    """The ``Retry-After`` (seconds) of a 503 for the transient database error ``exc``:
    after the mapping lock's bounded wait ran out (lock_not_available on its shared
    request), RETRY_FACTOR times ``[mapping] write_wait_ms`` within RETRY_AFTER_LIMITS;
    for any other transient error 1."""
    orig = getattr(exc, "orig", None)
    statement = getattr(exc, "statement", None) or ""
    if getattr(orig, "sqlstate", None) != "55P03" or \
            "pg_advisory_xact_lock_shared(" not in statement:
        return "1"
    found = _wait_by_engine.get(engine)
    wait_s = -(-(_wait_from_environment() if found is None else found) // 1000)
    low, high = RETRY_AFTER_LIMITS
    return str(min(high, max(low, RETRY_FACTOR * wait_s)))


def mapping_lock_key(organization_id: str) -> int:
    """The organization's advisory-lock key: a signed 64-bit hash in the mapping's namespace."""
    digest = hashlib.blake2b(organization_id.encode(), digest_size=8, person=b"roster.mapping")
    return int.from_bytes(digest.digest(), "big", signed=True)


def _wait_shared(connection: Connection, params: dict[str, Any], wait_ms: int) -> None:
    """Wait for the shared lock at most ``wait_ms`` (0: without limit); past it, raise the
    database's lock_not_available (the transaction, or its savepoint, is then aborted)."""
    if wait_ms <= 0:
        connection.execute(_SHARED, params)
        return
    # SET LOCAL for this one statement: the row locks after it keep the transaction's own
    # lock_timeout (none by default). A failure aborts the transaction (or savepoint), which
    # undoes the SET LOCAL with it.
    prior = connection.execute(_LOCK_TIMEOUT).scalar()
    connection.execute(_SET_LOCK_TIMEOUT, {"b_value": f"{wait_ms}ms"})
    connection.execute(_SHARED, params)
    connection.execute(_SET_LOCK_TIMEOUT, {"b_value": prior})
