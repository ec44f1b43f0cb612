"""Rate limits per API key and per SCIM token, shared by every app node.

The ``limits`` library supplies the limit strings and the fixed-window strategy; the
counters live in the ``rate_limit_counters`` table (:class:`DatabaseStorage`, a ``limits``
storage), so two app nodes on one PostgreSQL database count together. Over the limit,
/api/v1 answers 429 problem JSON and /scim/v2 a SCIM error (RFC 7644 §3.12), both with
``Retry-After`` (RFC 9110 §10.2.3). The credential is keyed by its SHA-256, never stored.

Writing the shared counter on every request made each read a write transaction (on
SQLite they then queue behind one another) and cost ~20 % of a SCIM request. So each
process *leases* a slice of the window's quota from the shared counter, ``max(1, limit //
LEASE_FRACTION)`` requests in one upsert, and serves from its slice until it is used up
or the window ends; a lease the counter cannot cover is a 429, remembered locally until
the window ends. The limit therefore holds across nodes to within one unused slice per
node (a node may hold requests it never serves); limits under ``LEASE_FRACTION`` per
window lease one request at a time and are exact. A lease being written holds up only the
requests of its own key (app/api/leases.py).

The access tokens of one SCIM OAuth client count together, under the client (RFC 6749
§4.4 lets it obtain any number of them). A SCIM Bulk costs one request per operation
(``charge``, called by app/scim/bulk.py): the operations after the first are leased in one
conditional upsert that adds them only if the window can still cover them all, so a
refused Bulk takes nothing beyond its own request.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from flask import Flask, Response, current_app, g, request
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, Storage
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import case, delete, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from app.api.errors import problem_response
from app.api.frame import ROUTES
from app.api.leases import LeasedLimiter
from app.bearer import presented_bearer
from app.db import Database, delete_in_batches, utcnow
from app.directory.oauth_clients import ACCESS_TOKEN_PREFIX
from app.models.api import RateLimitCounter
from app.scim.errors import error_response

# Blueprint name -> settings key of its limit.
LIMITED_BLUEPRINTS = {"api": "api", "scim": "scim"}
# Counters of windows that ended this long ago are deleted now and then.
PURGE_AFTER = timedelta(hours=1)


class DatabaseStorage(Storage):
    """A ``limits`` storage on our database: one row per key, a window end per row."""

    STORAGE_SCHEME = ["roster+database"]

    def __init__(self, db: Database) -> None:
        super().__init__()
        self.db = db

    @property
    def base_exceptions(self) -> type[Exception]:
        """Errors of the backing store (``limits`` may wrap them)."""
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add ``amount`` in the key's current window (a new one if it ended); one statement."""
        return self.lease(key, expiry, amount)[0]

    def lease(self, key: str, expiry: int, amount: int) -> tuple[int, datetime]:
        """Add ``amount`` in the key's current window; its new count and end, one statement."""
        leased = self._upsert(key, expiry, amount, None)
        assert leased is not None  # without a ceiling the upsert always returns its row
        return leased

    def lease_within(self, key: str, expiry: int, amount: int,
                     ceiling: int) -> tuple[int, datetime] | None:
        """Add ``amount`` only if the window's count stays at most ``ceiling`` (all or
        nothing, one statement); the new count and end, None when it would not fit."""
        return self._upsert(key, expiry, amount, ceiling)

    def _upsert(self, key: str, expiry: int, amount: int,
                ceiling: int | None) -> tuple[int, datetime] | None:
        now = utcnow()
        table = RateLimitCounter.__table__
        insert = pg_insert if self.db.dialect == "postgresql" else sqlite_insert
        ended = table.c.expires_at <= now
        stmt = insert(table).values(key=key, count=amount,
                                    expires_at=now + timedelta(seconds=expiry))
        # ON CONFLICT DO UPDATE ... WHERE: a row the condition refuses is neither updated
        # nor returned (PostgreSQL INSERT, SQLite UPSERT), so the check and the add are one.
        fits = None if ceiling is None else or_(
            ended, table.c["count"] + stmt.excluded["count"] <= ceiling)
        stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={
            "count": case((ended, stmt.excluded["count"]),
                          else_=table.c["count"] + stmt.excluded["count"]),
            "expires_at": case((ended, stmt.excluded.expires_at), else_=table.c.expires_at),
        }, where=fits).returning(table.c["count"], table.c.expires_at)
        with self.db.transaction() as session:
            row = session.execute(stmt).one_or_none()
            if row is None:
                return None
            count, expires_at = row
            if count == amount and _purge_turn(key):
                session.execute(delete(RateLimitCounter).where(
                    RateLimitCounter.expires_at < now - PURGE_AFTER))
        # RETURNING bypasses the column type on some drivers: SQLite may hand back text.
        if isinstance(expires_at, str):
            expires_at = datetime.fromisoformat(expires_at)
        if expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        return int(count), expires_at

    def _row(self, key: str) -> RateLimitCounter | None:
        with self.db.transaction(readonly=True) as session:
            row = session.get(RateLimitCounter, key)
            if row is None or row.expires_at <= utcnow():
                return None
            session.expunge(row)
            return row

    def get(self, key: str) -> int:
        """Hits in the key's current window (0 if none)."""
        row = self._row(key)
        return row.count if row else 0

    def get_expiry(self, key: str) -> float:
        """When the key's current window ends, as a Unix time."""
        row = self._row(key)
        return (row.expires_at if row else utcnow()).timestamp()

    def check(self) -> bool:
        """Whether the database answers."""
        try:
            with self.db.transaction(readonly=True) as session:
                session.execute(select(1))
            return True
        except SQLAlchemyError:
            return False

    def reset(self) -> int | None:
        """Forget every counter."""
        with self.db.transaction() as session:
            return session.execute(delete(RateLimitCounter)).rowcount  # type: ignore[attr-defined]

    def clear(self, key: str) -> None:
        """Forget one key's counter."""
        with self.db.transaction() as session:
            session.execute(delete(RateLimitCounter).where(RateLimitCounter.key == key))


def purge_ended(db: Database, batch_size: int, *, max_batches: int | None = None,
                now: datetime | None = None) -> tuple[int, bool]:
    """Delete the counters of windows that ended over ``PURGE_AFTER`` ago, a batch per
    transaction; how many, and whether ``max_batches`` stopped it with some left.

    Requests purge now and then as they come (``_purge_turn``); `roster worker` runs this
    so that a quiet deployment does not keep for good the keys of its last windows, the
    client addresses of failed authentications among them. A counter a lease renews
    meanwhile is not deleted (its window is checked again in the DELETE; PostgreSQL skips
    rows another transaction holds).
    """
    cutoff = (now or utcnow()) - PURGE_AFTER
    pick = select(RateLimitCounter.key).where(RateLimitCounter.expires_at < cutoff) \
        .order_by(RateLimitCounter.expires_at)
    return delete_in_batches(db, pick, lambda keys: delete(RateLimitCounter).where(
        RateLimitCounter.key.in_(keys), RateLimitCounter.expires_at < cutoff),
        batch_size, max_batches=max_batches)


def _purge_turn(key: str) -> bool:
    """About one new window in a hundred also purges old rows (keeps the table small)."""
    return hashlib.sha256(f"{key}{time.time_ns()}".encode()).digest()[0] < 3


class RateLimits:
    """The configured limits of one app and the limiter that counts them."""

    def __init__(self, settings: dict[str, Any], db: Database) -> None:
        # The strings and the storage were checked with every other setting at start
        # (app/settings_checks.py).
        self.items: dict[str, RateLimitItem] = {
            blueprint: parse(settings[name]) for blueprint, name in LIMITED_BLUEPRINTS.items()}
        self.leased = (LeasedLimiter(DatabaseStorage(db))
                       if settings["storage"] == "database" else None)
        self.limiter = FixedWindowRateLimiter(MemoryStorage())
        self.lock = threading.Lock()

    def check(self, blueprint: str, identity: str, cost: int = 1) -> int | None:
        """Count ``cost`` requests of the credential whose digest is ``identity``; None when
        allowed, else the seconds until the window ends. A charge of more than one that
        the window cannot cover takes nothing (see ``LeasedLimiter.check``)."""
        item = self.items[blueprint]
        if self.leased is not None:
            return self.leased.check(item, item.key_for(blueprint, identity), cost)
        with self.lock:  # test and hit as one: a refused charge must take nothing
            if (cost == 1 or self.limiter.test(item, blueprint, identity, cost=cost)) \
                    and self.limiter.hit(item, blueprint, identity, cost=cost):
                return None
        reset = self.limiter.get_window_stats(item, blueprint, identity).reset_time
        return max(1, math.ceil(reset - datetime.now(UTC).timestamp()))


def request_limit(blueprint: str) -> RateLimitItem | None:
    """The limit each credential has under ``blueprint``, None when limits are off."""
    limits: RateLimits | None = current_app.extensions.get("roster.ratelimits")
    return None if limits is None else limits.items[blueprint]


def charge(blueprint: str, cost: int) -> int | None:
    """Count ``cost`` more requests of the current request's credential, on top of the one
    counted before the view (a SCIM Bulk's other operations); None when allowed or not
    limited, else the seconds until the window ends. A refused charge takes nothing: the
    quota stays for requests it can cover."""
    limits: RateLimits | None = current_app.extensions.get("roster.ratelimits")
    identity: str | None = g.get("ratelimit_identity")
    if limits is None or identity is None or cost < 1:
        return None
    return limits.check(blueprint, identity, cost)


def count_as(blueprint: str, identity: str) -> Response | None:
    """Count this request under ``identity`` (a digest naming the credential), for a
    credential only its blueprint can name once authenticated (a SCIM OAuth access token
    counts under its client); the 429 to answer, else None."""
    limits: RateLimits | None = current_app.extensions.get("roster.ratelimits")
    if limits is None:
        return None
    g.ratelimit_identity = identity
    retry_after = limits.check(blueprint, identity)
    return None if retry_after is None else _refused(limits, blueprint, retry_after)


def retry_after_counting(blueprint: str, identity: str) -> int | None:
    """Count one request under ``identity`` in ``blueprint``'s limit, answered outside it
    (an OAuth client's token request counts under its SCIM quota); None when allowed or
    not limited, else the seconds until the window ends."""
    limits: RateLimits | None = current_app.extensions.get("roster.ratelimits")
    return None if limits is None else limits.check(blueprint, identity)


def init_rate_limits(app: Flask) -> None:
    """Count every /api/v1 and /scim/v2 request carrying a bearer credential."""
    settings = app.config["ROSTER"]["ratelimit"]
    if not settings["enabled"]:
        return
    limits = app.extensions["roster.ratelimits"] = RateLimits(
        settings, app.extensions["roster.db"])
    app.before_request(partial(_limit, limits))


def _limit(limits: RateLimits) -> Response | None:
    blueprint = request.blueprint
    if blueprint not in LIMITED_BLUEPRINTS:
        return None
    spec = ROUTES.get(request.endpoint or "")
    if spec is not None and spec.permission is None:
        # A public route checks no key: one sent along is no caller's, and counting each
        # made-up one wrote a counter row that no failed authentication would ever stop.
        return None
    presented = presented_bearer()
    if presented is None:
        return None
    if blueprint == "scim" and presented.credential.startswith(ACCESS_TOKEN_PREFIX):
        # An OAuth client obtains access tokens at will (RFC 6749 §4.4): counted per token,
        # each new one would bring a fresh quota. They count under their client, which only
        # authentication knows (app/scim/client_limit.py, count_as).
        return None
    g.ratelimit_identity = presented.digest
    retry_after = limits.check(blueprint, presented.digest)
    return None if retry_after is None else _refused(limits, blueprint, retry_after)


def _refused(limits: RateLimits, blueprint: str, retry_after: int) -> Response:
    """429 in the blueprint's error format, with Retry-After (RFC 9110 §10.2.3)."""
    detail = (f"rate limit of {limits.items[blueprint]} per credential exceeded; "
              f"retry in {retry_after} s")
    response = (error_response(429, detail) if blueprint == "scim"
                else problem_response(429, detail))
    g.ratelimit_refused = "credential"
    response.headers["Retry-After"] = str(retry_after)
    return response
