"""Leases of the shared rate-limit counters, served from memory (see app/api/ratelimit.py).

A process takes a slice of a key's window quota from the shared counter in one upsert and
serves requests from it until it is used up or the window ends. The upsert is a database
write: on SQLite it may wait for the write lock, on PostgreSQL for a slow server. Only the
requests of that key wait for it: each key has a lock of its own while some request needs
its lease written, and the lease table itself is guarded by a short process-wide lock that
is never held across a database statement. So one credential's slow lease never stalls the
rate-limit check of another credential served from its own lease.

Key locks exist only while a request holds or waits for one (counted, and dropped when the
last of them is done): memory is bounded by the requests in flight, never by the number of
keys a window sees. The lease table keeps at most ``MAX_LEASES`` leases (see ``_keep``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from limits import RateLimitItem

if TYPE_CHECKING:
    from app.api.ratelimit import DatabaseStorage

# A lease is this fraction of the limit: 1200/minute leases 60 requests per upsert.
LEASE_FRACTION = 20
# Leases one process keeps at most: memory stays bounded whatever the number of credentials
# (made-up tokens each count under their own key) a window sees.
MAX_LEASES = 10_000


@dataclass
class _Lease:
    """Requests this process may still serve for one key, until its window ends."""

    remaining: int
    ends: float  # Unix time
    # The shared counter could not cover the slice: refuse locally until the window ends.
    exhausted: bool


@dataclass
class _KeyLock:
    """The lock of one key and how many requests hold or wait for it."""

    lock: threading.Lock
    users: int = 0


class LeasedLimiter:
    """Fixed windows counted in :class:`DatabaseStorage` one slice at a time (see above)."""

    def __init__(self, storage: DatabaseStorage) -> None:
        self.storage = storage
        self.leases: dict[str, _Lease] = {}
        # gthread workers serve several requests at once. ``lock`` guards the lease table
        # and the key locks' table, and is never held across a database statement.
        self.lock = threading.Lock()
        self.key_locks: dict[str, _KeyLock] = {}

    def check(self, item: RateLimitItem, key: str, cost: int = 1) -> int | None:
        """Take ``cost`` requests from the local lease, leasing more when it falls short;
        None when allowed, else the seconds until the window ends.

        One request leases a slice whatever the shared count says (a slice it cannot cover
        is remembered as a refusal until the window ends). More than one (a SCIM Bulk) lease
        the whole slices they lack only if the shared count can cover them, else exactly
        what they lack, else nothing: a refused charge leaves the quota as it was, so
        smaller requests may still use it."""
        with self.lock:
            answer = self._local(key, cost, time.time())
        if answer is not _LEASE:
            return answer  # type: ignore[return-value]
        with self._key_lock(key):
            now = time.time()
            with self.lock:
                # Another request of this key may have leased while this one waited.
                answer = self._local(key, cost, now)
                if answer is not _LEASE:
                    return answer  # type: ignore[return-value]
                lease = self._live(key, now)
                # The part of the lease a charge counts on is taken out now: requests of
                # this key served meanwhile from the table cannot spend it twice.
                have = 0 if lease is None or cost == 1 else lease.remaining
                if have:
                    lease.remaining = 0  # type: ignore[union-attr]
            if cost == 1:
                return self._lease_one(item, key, now)
            return self._charge(item, key, lease, have, cost, now)

    def _live(self, key: str, now: float) -> _Lease | None:
        lease = self.leases.get(key)
        return lease if lease is not None and lease.ends > now else None

    def _local(self, key: str, cost: int, now: float) -> int | object | None:
        """What the lease table alone answers (caller holds ``lock``): None (allowed), the
        seconds to wait (refused), or ``_LEASE`` when the shared counter must be asked."""
        lease = self._live(key, now)
        if lease is None:
            return _LEASE
        if lease.remaining >= cost:
            lease.remaining -= cost
            return None
        if lease.exhausted:  # the shared count is known to be spent
            return max(1, math.ceil(lease.ends - now))
        return _LEASE

    @contextmanager
    def _key_lock(self, key: str) -> Iterator[None]:
        """Hold ``key``'s own lock; it is dropped once no request holds or waits for it."""
        with self.lock:
            entry = self.key_locks.get(key)
            if entry is None:
                entry = self.key_locks[key] = _KeyLock(threading.Lock())
            entry.users += 1
        try:
            with entry.lock:
                yield
        finally:
            with self.lock:
                entry.users -= 1
                if entry.users == 0:
                    del self.key_locks[key]

    def _lease_one(self, item: RateLimitItem, key: str, now: float) -> int | None:
        """Lease a slice for one request (caller holds the key's lock, not ``lock``)."""
        size = max(1, item.amount // LEASE_FRACTION)
        count, ends = self.storage.lease(key, item.get_expiry(), size)
        # The slice may straddle the limit: only the part still under it is ours.
        granted = max(0, min(size, item.amount - (count - size)))
        lease = _Lease(remaining=granted, ends=ends.timestamp(), exhausted=granted < size)
        with self.lock:
            self._keep(key, lease)
            if lease.remaining > 0:
                lease.remaining -= 1
                return None
        return max(1, math.ceil(lease.ends - now))

    def _charge(self, item: RateLimitItem, key: str, lease: _Lease | None, have: int,
                cost: int, now: float) -> int | None:
        """Lease what ``cost`` lacks beyond ``have`` (taken out of ``lease``), all or nothing
        (caller holds the key's lock, not ``lock``); on refusal ``have`` goes back."""
        try:
            answer = self._charge_shared(item, key, lease, have, cost, now)
        except BaseException:
            self._give_back(key, lease, have)
            raise
        if answer is not None:
            self._give_back(key, lease, have)
        return answer

    def _give_back(self, key: str, lease: _Lease | None, have: int) -> None:
        with self.lock:
            if lease is not None and have and self.leases.get(key) is lease:
                lease.remaining += have

    def _charge_shared(self, item: RateLimitItem, key: str, lease: _Lease | None,
                       have: int, cost: int, now: float) -> int | None:
        need = cost - have
        size = max(1, item.amount // LEASE_FRACTION)
        want = min(item.amount, math.ceil(need / size) * size)
        leased = self.storage.lease_within(key, item.get_expiry(), want, item.amount)
        if leased is None and want > need:
            want = need
            leased = self.storage.lease_within(key, item.get_expiry(), want, item.amount)
        if leased is None:
            ends = lease.ends if lease is not None else self.storage.get_expiry(key)
            return max(1, math.ceil(ends - now))
        ends = leased[1].timestamp()
        if lease is not None and lease.ends != ends:
            have = 0  # the window ended meanwhile: the old lease's requests went with it
        if have + want < cost:  # only in a window that began just now: lease the rest
            fresh = _Lease(remaining=0, ends=ends, exhausted=False)
            with self.lock:
                self._keep(key, fresh)
            return self._charge(item, key, fresh, have + want, cost, now)
        with self.lock:
            self._keep(key, _Lease(remaining=have + want - cost, ends=ends, exhausted=False))
        return None

    def _keep(self, key: str, lease: _Lease) -> _Lease:
        """Store ``key``'s lease (caller holds ``lock``)."""
        self.leases.pop(key, None)
        self.leases[key] = lease  # newest last: the table is in lease order
        if len(self.leases) > MAX_LEASES:
            # Many credentials: forget the ended windows, then the oldest leases. A forgotten
            # lease gives up only its unused slice (the shared count keeps it): the key's
            # next request leases again, so no request escapes the count.
            now = time.time()
            live = {k: v for k, v in self.leases.items() if v.ends > now}
            self.leases = dict(list(live.items())[-MAX_LEASES // 2:]) \
                if len(live) > MAX_LEASES else live
        return lease


# ``LeasedLimiter._local``'s answer when only the shared counter can tell.
_LEASE = object()
