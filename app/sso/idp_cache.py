"""Documents read from customer IdPs (OIDC discovery documents, JWK Sets), cached per URL,
with the IdP's failures remembered so that an outage cannot tie up the request threads.

Per process, per URL (connections of any organization naming the same URL share it; two
URLs share nothing):

* A good document is kept ``ttl`` seconds (OIDC Discovery 1.0 §4, RFC 7517 §5: neither
  says for how long; an hour, as before).
* A failed read (``idp_unreachable``, ``discovery_failed``) is remembered for
  ``backoff_seconds``, doubled after each consecutive failure up to
  ``backoff_max_seconds``, and forgotten at the first good read. Meanwhile the IdP
  is not asked again: a login needing that document is refused at once with the same
  reason and detail (plus when the IdP is asked again). Before, every login of an outage
  went to the IdP and could wait the whole deadline (``oidc_rp.HTTP_TIMEOUT_SECONDS``,
  10 s) on a request thread: a crowd of employees retrying took every worker.
* While a document expired less than ``stale_if_error_seconds`` ago, a failed re-read
  keeps serving it (the stale-if-error of RFC 5861 §4): the IdP's discovery or JWKS
  endpoint being down does not stop logins that the rest of the IdP can still complete.
  Never for a re-read forced by an unknown key id: that one was asked for because the
  document we hold does not have the key, and its failure is the refusal.
* One read of a URL at a time: while it runs, the other requests for that URL use the
  document or failure already known, and only wait when there is none yet (the first
  read ever, itself bounded by the deadline).
* A re-read forced by an unknown ``kid`` (key rotation at the IdP) happens at most once per
  ``forced_refresh_seconds`` per URL; within it, the document held is used.

The four bounds are a :class:`CachePolicy`, from the settings of ``[sso]`` (``idp_*``) in
the app; the constants below are their defaults. ``clock`` (default ``time.monotonic``) is
injectable for tests.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.sso.outcome import LoginFailed

FAILURE_BACKOFF_SECONDS = 2.0
FAILURE_BACKOFF_MAX_SECONDS = 30.0
STALE_IF_ERROR_SECONDS = 3600.0
FORCED_REFRESH_INTERVAL_SECONDS = 30.0
# URLs remembered at most (least recently used forgotten first): they come from connections
# admins configure, but memory stays bounded whatever their number.
MAX_URLS = 10_000

_NEVER = float("-inf")


@dataclass(frozen=True)
class CachePolicy:
    """How long failures are remembered, how long an expired document may still serve,
    how often an unknown key id may force a re-read (seconds)."""

    backoff_seconds: float = FAILURE_BACKOFF_SECONDS
    backoff_max_seconds: float = FAILURE_BACKOFF_MAX_SECONDS
    stale_if_error_seconds: float = STALE_IF_ERROR_SECONDS
    forced_refresh_seconds: float = FORCED_REFRESH_INTERVAL_SECONDS

    @classmethod
    def from_settings(cls, sso: dict[str, Any]) -> CachePolicy:
        """From the validated ``[sso]`` settings."""
        return cls(float(sso["idp_failure_backoff_seconds"]),
                   float(sso["idp_failure_backoff_max_seconds"]),
                   float(sso["idp_stale_if_error_seconds"]),
                   float(sso["idp_forced_refresh_seconds"]))


@dataclass
class _Entry:
    """What this process knows of one URL."""

    value: Any = None
    read_at: float = _NEVER  # clock() of the last good read (value)
    failure: LoginFailed | None = None  # the last read's failure, until a good read
    retry_at: float = _NEVER  # no read before this (after a failure)
    streak: int = 0  # consecutive failed reads
    forced_at: float = _NEVER  # clock() of the last forced re-read
    reading: threading.Lock = field(default_factory=threading.Lock)


class DocumentCache:
    """Documents per URL, read with ``fetch`` and checked with a caller's ``make``."""

    def __init__(self, fetch: Callable[[str], dict[str, Any]], ttl_seconds: float, *,
                 clock: Callable[[], float] = time.monotonic,
                 policy: CachePolicy | None = None) -> None:
        self._fetch, self._ttl, self._clock = fetch, ttl_seconds, clock
        self._policy = policy or CachePolicy()
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def _entry(self, url: str) -> _Entry:
        with self._lock:
            entry = self._entries.get(url)
            if entry is None:
                entry = self._entries[url] = _Entry()
                while len(self._entries) > MAX_URLS:
                    self._entries.popitem(last=False)
            self._entries.move_to_end(url)
            return entry

    def get(self, url: str, make: Callable[[dict[str, Any]], Any], *,
            forced: bool = False) -> Any:
        """The document at ``url`` (``make`` of what was read); ``forced``: re-read it
        (an unknown key id), unless one was forced within the interval."""
        entry = self._entry(url)
        while True:
            known = self._known(entry, forced)
            if known is not None:
                return known[0]
            if entry.reading.acquire(blocking=False):
                break
            known = self._meanwhile(entry, forced)
            if known is not None:
                return known[0]
            with entry.reading:  # nothing to answer with: wait for that read (bounded)
                pass
        try:
            known = self._known(entry, forced)  # a read that ended as we took the lock
            return known[0] if known is not None else self._read(entry, url, make, forced)
        finally:
            entry.reading.release()

    def _known(self, entry: _Entry, forced: bool) -> tuple[Any] | None:
        """The answer without reading: a fresh document, the one held when a forced
        re-read is not due, or the remembered failure (or the stale document) while the
        IdP is not to be asked. None: read."""
        now = self._clock()
        with self._lock:
            if forced and entry.read_at != _NEVER and \
                    now - entry.forced_at < self._policy.forced_refresh_seconds:
                return (entry.value,)
            if not forced and now - entry.read_at < self._ttl:
                return (entry.value,)
            if now < entry.retry_at:
                if self._may_serve_stale(entry, now, forced):
                    return (entry.value,)
                raise self._remembered(entry, now)
        return None

    def _meanwhile(self, entry: _Entry, forced: bool) -> tuple[Any] | None:
        """Another request is reading the URL: the stale document, else the failure
        remembered; None when there is neither (wait for that read)."""
        now = self._clock()
        with self._lock:
            if self._may_serve_stale(entry, now, forced):
                return (entry.value,)
            if entry.failure is not None:
                raise self._remembered(entry, now)
        return None

    def _may_serve_stale(self, entry: _Entry, now: float, forced: bool) -> bool:
        """Whether the document held may answer though it expired (never a forced read)."""
        return not forced and entry.read_at != _NEVER and \
            now - entry.read_at < self._ttl + self._policy.stale_if_error_seconds

    @staticmethod
    def _remembered(entry: _Entry, now: float) -> LoginFailed:
        """The last read's failure, anew (an exception object is not shared by threads)."""
        failure = entry.failure or LoginFailed("idp_unreachable", "no answer")
        wait = max(entry.retry_at - now, 0.0)
        return LoginFailed(failure.reason, f"{failure.detail} (remembered: the IdP is "
                           f"asked again in {wait:.0f} s)"[:500])

    def _read(self, entry: _Entry, url: str, make: Callable[[dict[str, Any]], Any],
              forced: bool) -> Any:
        """Read the URL (its reading lock held); remember what came of it."""
        if forced:
            entry.forced_at = self._clock()
        try:
            value = make(self._fetch(url))
        except LoginFailed as exc:
            now = self._clock()
            with self._lock:
                entry.streak += 1
                entry.failure = exc
                entry.retry_at = now + min(
                    self._policy.backoff_max_seconds,
                    self._policy.backoff_seconds * 2 ** min(entry.streak - 1, 20))
                stale = self._may_serve_stale(entry, now, forced)
            if stale:
                return entry.value
            raise
        with self._lock:
            entry.value, entry.read_at = value, self._clock()
            entry.failure, entry.retry_at, entry.streak = None, _NEVER, 0
        return value

    def forget(self) -> None:
        """Drop every document and failure (tests, or an operator forcing a re-read)."""
        with self._lock:
            self._entries.clear()
