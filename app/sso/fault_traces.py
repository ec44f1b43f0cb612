"""Sign-in refusals the client did not cause: traced once per connection, reason and interval.

A refusal because the connection's IdP is down or misbehaving (``idp_unreachable``: no
answer, a 5xx or 429, a timeout, at discovery, JWKS or the code exchange;
``discovery_failed``: its discovery document or JWKS unusable; an ``idp_error`` of
``server_error`` or ``temporarily_unavailable``, RFC 6749 §4.1.2.1) or because of the
connection's own state (``misconfigured``, ``connection_disabled``) says nothing about the
client: every employee of the organization gets it. Counted against the client's address
(``ratelimit.failed_auth``, app/api/authlimit.py), an office behind one NAT retrying its
logins through an IdP outage was answered 429, and stayed blocked after the IdP recovered
until the window ended. These are not counted.

Their trace rows still need a bound, since any client may start a login through such a
connection as often as it likes: per process, the first refusal of a (connection, reason)
writes its trace, and the others within ``TRACE_INTERVAL_SECONDS`` write nothing: they show
that trace's correlation id (the admin finds the reason the user quotes) once it is stored,
are counted in
the metric ``roster_sso_refusals_untraced_total{reason}``, and their number is written with
the next trace of the same connection and reason (payload ``untraced_repeats``; when that
trace's write fails, with the next one written). The rows
written are thus at most one per connection, reason, interval and process, whoever asks.

A refusal shows the id of a trace still being written only once that write has committed
(it waits ``STORED_WAIT_SECONDS`` at most): when the write fails (a busy or failing
database), the id names nothing, and an admin looking up the id the user quoted found no
trace. Then the refusal writes its own trace instead, and shows no id if it cannot tell.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from app.ids import new_id
from app.sso.outcome import LoginFailed

# Reasons whose cause is the connection's IdP or the connection itself, never the client.
NOT_CAUSED_BY_CLIENT = frozenset(
    {"idp_unreachable", "idp_not_public", "discovery_failed", "misconfigured",
     "connection_disabled"})


def not_caused_by_client(exc: LoginFailed) -> bool:
    """Whether a refusal before any subject was vouched for is the IdP's or the
    connection's doing, not the client's."""
    return exc.subject is None and (exc.reason in NOT_CAUSED_BY_CLIENT or exc.idp_fault)


# One trace per connection and reason per this many seconds (per process).
TRACE_INTERVAL_SECONDS = 10.0
# (connection, reason) pairs remembered at most, oldest forgotten first: connections are
# rows an admin made, but memory stays bounded whatever their number.
MAX_KEYS = 10_000
# How long a refusal waits for the write of the trace whose id it would show: longer than
# a write waits for a lock (database.sqlite_busy_timeout_ms, 5 s by default), so that it
# learns how the write ended.
STORED_WAIT_SECONDS = 30.0


@dataclass
class _Slot:
    trace_id: str
    since: float  # time.monotonic() of the trace's claim
    repeats: int = 0
    settled: threading.Event = field(default_factory=threading.Event)
    stored: bool = False  # the trace committed (meaningful once ``settled``)


@dataclass(frozen=True)
class Claim:
    """What one refusal does: write the trace ``trace_id`` (``write``), or only show it.

    A writing claim carries the untraced repeats of the interval before it
    (``repeats_before`` refusals that showed ``previous_id``)."""

    trace_id: str
    write: bool
    repeats_before: int = 0
    previous_id: str | None = None
    slot: _Slot | None = field(default=None, repr=False, compare=False)


class FaultTraces:
    """Per process: the trace of the current interval per (connection, reason)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: OrderedDict[tuple[str, str], _Slot] = OrderedDict()

    def claim(self, connection_id: str, reason: str) -> Claim:
        """The first refusal of an interval claims a new trace id (to write); the others
        within ``TRACE_INTERVAL_SECONDS`` of it get that id, and are counted."""
        key, now = (connection_id, reason), time.monotonic()
        with self._lock:
            slot = self._slots.get(key)
            if slot is not None and now - slot.since < TRACE_INTERVAL_SECONDS:
                slot.repeats += 1
                return Claim(slot.trace_id, write=False, slot=slot)
            fresh = self._slots[key] = _Slot(new_id(), now)
            self._slots.move_to_end(key)
            while len(self._slots) > MAX_KEYS:
                self._slots.popitem(last=False)
        if slot is None:
            return Claim(fresh.trace_id, write=True, slot=fresh)
        return Claim(fresh.trace_id, write=True, repeats_before=slot.repeats,
                     previous_id=slot.trace_id, slot=fresh)

    @staticmethod
    def stored(claim: Claim) -> bool | None:
        """Whether the trace a non-writing claim would show was stored: True, False (its
        write failed), None (still being written after ``STORED_WAIT_SECONDS``)."""
        if claim.slot is None:
            return None
        if not claim.slot.settled.wait(STORED_WAIT_SECONDS):
            return None
        return claim.slot.stored

    @staticmethod
    def written(claim: Claim) -> None:
        """The writing claim's trace committed: the refusals showing its id may."""
        if claim.slot is not None:
            claim.slot.stored = True
            claim.slot.settled.set()

    def release(self, connection_id: str, reason: str, claim: Claim) -> None:
        """Forget a claimed trace that was not written (its transaction failed): the next
        refusal writes one, and so do those waiting to show its id. The untraced repeats
        the claim carried go to that next trace (they went with the failed write): its
        interval's place is taken by one already over, counting them under the id they
        showed. The refusals counted on the failed trace itself are not carried: they
        write their own trace, or are counted again on the next one."""
        key = (connection_id, reason)
        with self._lock:
            slot = self._slots.get(key)
            if slot is not None and slot is claim.slot:
                if claim.repeats_before and claim.previous_id is not None:
                    carried = _Slot(claim.previous_id, float("-inf"), claim.repeats_before,
                                    stored=True)
                    carried.settled.set()
                    self._slots[key] = carried
                else:
                    del self._slots[key]
        if claim.slot is not None:
            claim.slot.settled.set()  # not stored
