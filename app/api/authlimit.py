"""A limit on failed authentications per client address, for every credential Roster checks.

The per-credential limits (``ratelimit.py``) count a credential before it is checked, so a
client sending a new random token each time was never limited. This one counts refused
credentials per client address (``request.remote_addr``: the peer, or with
``app.trusted_proxies`` the address ProxyFix took from X-Forwarded-For, never the header
itself; an IPv6 address counts as its /64, which one host usually holds whole): SCIM bearer
tokens, /api/v1 keys, and client authentication at the token endpoints (/oauth/token, the
OIDC provider's token, introspection and revocation endpoints, RFC 6749 §2.3) and its
UserInfo bearer token; and sign-ins refused before an IdP vouched for a subject
(``app/sso/web.py``: a forged or replayed SAML Response, an unknown connection id), whose
trace rows an anonymous client could otherwise write at will; not a refusal the client did
not cause (its IdP down, the connection disabled: ``app/sso/fault_traces.py``). Once an
address reached ``ratelimit.failed_auth`` failures in a window, its requests with a
credential are answered 429 with ``Retry-After`` (RFC 6585 §4, RFC 9110 §10.2.3) without
looking the credential up, each in its protocol's error format (a refused sign-in: a plain
429 page, no trace).

A legitimate IdP may share its address with a failing one (Okta's and Entra's provisioning
egress serves all their customers): a credential that authenticated in this process lately
(``KNOWN_GOOD`` of them, as SHA-256 digests, never the secret) is still checked as usual,
in constant time as always, while its address is blocked. A successful request costs no
database statement: failures are counted in ``rate_limit_counters`` (shared by every
process with ``storage = "database"``), blocks and known credentials in bounded memory.
Each process learns of a block at its own next failure, so an address gets at most one
more check per process per window.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import time
from collections import OrderedDict
from functools import partial
from typing import Any

from flask import Flask, Request, Response, g, jsonify, request
from limits import RateLimitItem, parse
from sqlalchemy.exc import SQLAlchemyError

from app.api.errors import problem_response
from app.api.frame import ROUTES
from app.api.ratelimit import DatabaseStorage
from app.bearer import digest_of, presented_bearer
from app.scim.errors import error_response

log = logging.getLogger(__name__)

# Blueprints whose every credential is a bearer token; failure there is a 401.
BEARER_BLUEPRINTS = ("scim", "api")
# OAuth endpoints: client authentication (RFC 6749 §2.3.1) or a bearer token (UserInfo).
CLIENT_AUTH_ENDPOINTS = ("oauth.token", "sso.token", "sso.introspect", "sso.revoke")
USERINFO_ENDPOINT = "sso.userinfo"
# Entries each in-memory table holds at most (oldest forgotten first): bounded memory
# whatever the number of addresses or credentials a client makes up.
MAX_ADDRESSES = 10_000
KNOWN_GOOD = 10_000
# A known credential's place in the table is refreshed at most this often (seconds).
REFRESH_AFTER = 60.0
IPV6_PREFIX = 64


def client_key(address: str | None) -> str:
    """The address failures are counted under: IPv4 as is, IPv6 as its /64 network."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{IPV6_PREFIX}", strict=False))
    return str(ip)


def _bounded_set(table: OrderedDict[Any, Any], key: Any, value: Any, limit: int) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > limit:
        table.popitem(last=False)


class FailedAuthLimiter:
    """Failure counts per address (shared) and, per process, blocked addresses and
    credentials known to be good."""

    def __init__(self, item: RateLimitItem, storage: DatabaseStorage | None) -> None:
        self.item = item
        self.storage = storage
        self.lock = threading.Lock()
        self.blocked: OrderedDict[str, float] = OrderedDict()  # address -> until (Unix)
        self.known: OrderedDict[str, float] = OrderedDict()  # digest -> last success
        self.counts: OrderedDict[str, tuple[int, float]] = OrderedDict()  # memory storage

    def blocked_for(self, address: str) -> int | None:
        """Seconds until the address's block ends, None when it is not blocked."""
        if not self.blocked:  # the common case: one truth test, no lock
            return None
        now = time.time()
        with self.lock:
            until = self.blocked.get(address)
            if until is None:
                return None
            if until <= now:
                del self.blocked[address]
                return None
        return max(1, math.ceil(until - now))

    def is_known(self, digest: str) -> bool:
        """Whether the credential of this digest authenticated in this process lately."""
        return digest in self.known

    def succeeded(self, digest: str) -> None:
        """Remember a credential that authenticated (by its digest)."""
        now = time.time()
        seen = self.known.get(digest)
        if seen is not None and now - seen < REFRESH_AFTER:
            return
        with self.lock:
            _bounded_set(self.known, digest, now, KNOWN_GOOD)

    def failed(self, address: str, digest: str) -> None:
        """Count a refused credential; at the limit, block the address until the window ends."""
        with self.lock:
            self.known.pop(digest, None)
        self.count_failure(address)

    def count_failure(self, address: str) -> None:
        """Count one failure of the address (a refused credential, a refused anonymous
        sign-in); at the limit, block it until the window ends."""
        count, ends = self._count(address)
        if count >= self.item.amount:
            with self.lock:
                _bounded_set(self.blocked, address, ends, MAX_ADDRESSES)

    def _count(self, address: str) -> tuple[int, float]:
        expiry = self.item.get_expiry()
        if self.storage is not None:
            count, ends = self.storage.lease(self.item.key_for("failed_auth", address),
                                             expiry, 1)
            return count, ends.timestamp()
        now = time.time()
        with self.lock:
            count, ends = self.counts.get(address, (0, 0.0))
            if ends <= now:
                count, ends = 0, now + expiry
            _bounded_set(self.counts, address, (count + 1, ends), MAX_ADDRESSES)
        return count + 1, ends


def init_failed_auth_limit(app: Flask) -> None:
    """Refuse addresses past ``ratelimit.failed_auth`` failures; count every failure."""
    settings = app.config["ROSTER"]["ratelimit"]
    if not settings["enabled"] or not settings["failed_auth"]:
        return
    storage = DatabaseStorage(app.extensions["roster.db"]) \
        if settings["storage"] == "database" else None
    limiter = app.extensions["roster.failed_auth"] = FailedAuthLimiter(
        parse(settings["failed_auth"]), storage)
    app.before_request(partial(_refuse_blocked, limiter))
    app.after_request(partial(_count_outcome, limiter))


def _credential(req: Request) -> str | None:
    """The digest of the credential this request presents, if it goes to an endpoint that
    checks one."""
    endpoint = req.endpoint or ""
    spec = ROUTES.get(endpoint)
    if spec is not None and spec.permission is None:  # a public API route checks no key
        return None
    if req.blueprint in BEARER_BLUEPRINTS or endpoint == USERINFO_ENDPOINT:
        presented = presented_bearer()
        return None if presented is None else presented.digest
    if endpoint in CLIENT_AUTH_ENDPOINTS and req.method == "POST":
        basic = req.headers.get("Authorization")
        if basic:
            return digest_of(basic)
        client_id, secret = req.form.get("client_id"), req.form.get("client_secret")
        return digest_of(f"{client_id}\x00{secret}") if client_id and secret else None
    return None


def _refuse_blocked(limiter: FailedAuthLimiter) -> Response | None:
    if not limiter.blocked:  # the common case: nothing more to read
        return None
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    retry_after = limiter.blocked_for(client_key(req.remote_addr))
    if retry_after is None:
        return None
    credential = _credential(req)
    if credential is None or limiter.is_known(credential):
        return None
    g.ratelimit_refused = "failed_auth"  # the recorder must not look the credential up
    detail = (f"too many failed authentications from this address (limit "
              f"{limiter.item} per address); retry in {retry_after} s")
    if req.blueprint == "scim":
        response = error_response(429, detail)
    elif req.blueprint == "api":
        response = problem_response(429, detail)
    else:
        # RFC 6749 defines no code for this; temporarily_unavailable (§4.1.2.1) is what
        # the token endpoint already answers a busy database with.
        response = jsonify(error="temporarily_unavailable", error_description=detail)
        response.status_code = 429
        response.headers["Cache-Control"] = "no-store"
    response.headers["Retry-After"] = str(retry_after)
    return response


def _authenticated(req: Request, status: int) -> bool:
    """Whether this request's credential was checked and accepted."""
    blueprint = req.blueprint
    if blueprint == "scim":
        return g.get("scim_caller") is not None
    if blueprint == "api":
        return bool(g.get("api_key_authenticated"))
    # Token endpoints and UserInfo answer 200 only after authenticating the client/token.
    return status == 200


def _count_outcome(limiter: FailedAuthLimiter, response: Response) -> Response:
    # The request once: each access through Flask's proxy costs a lookup. A success reads
    # the digest the per-credential limit already made (app.bearer.presented_bearer).
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    status = response.status_code
    if status != 401:
        if _authenticated(req, status):
            credential = _credential(req)
            if credential is not None:
                limiter.succeeded(credential)
        return response
    credential = _credential(req)
    if credential is not None:
        try:
            limiter.failed(client_key(req.remote_addr), credential)
        except SQLAlchemyError as exc:  # the 401 stands; counting is best effort
            log.warning("a failed authentication was not counted: %s", exc)
    return response
