"""Request helpers shared by the /sso endpoints (SAML, OIDC RP, logout): database, settings,
the acting browser, the redirect allow-list, failure pages and the final redirect."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, g, redirect, request, session
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.api.authlimit import FailedAuthLimiter, client_key
from app.audit import Actor, record
from app.db import Database
from app.log_throttle import EveryInterval
from app.models.sso import SsoConnection
from app.sso import pages
from app.sso.connection_sessions import hold_connection
from app.sso.fault_traces import Claim, FaultTraces, not_caused_by_client
from app.sso.keys import SpKeys, load_sp_keys
from app.sso.oidc_rp import ProviderCache
from app.sso.outcome import LoginFailed
from app.sso.provider_prompt import REAUTH
from app.sso.redirects import is_allowed_redirect
from app.sso.saml import SpUrls
from app.sso.sealed import Sealer, sealer
from app.sso.traces import record_trace

log = logging.getLogger("roster.sso")

# Messages the user sees per reason; everything else gets the generic one.
_MESSAGES = {
    "user_deprovisioned": "Your account has been deactivated. Contact your administrator.",
    "user_inactive": "Your account is not active. Contact your administrator.",
    "unknown_user": "Your account is not provisioned for this organization.",
    "domain_of_another_connection": "Your email address signs in through another sign-in "
                                    "option of your organization.",
    "subject_mismatch": "This sign-in account is linked to another user of your "
                        "organization. Contact your administrator.",
}
_USER_REFUSALS = frozenset({"user_deprovisioned", "user_inactive", "unknown_user",
                            "domain_of_another_connection", "subject_mismatch"})


def database() -> Database:
    """The app's database."""
    return current_app.extensions["roster.db"]


def sso_settings() -> dict[str, Any]:
    """The [sso] settings."""
    return current_app.config["ROSTER"]["sso"]


def base_url() -> str:
    """The deployment's public base URL (every URL we give an IdP is built from it)."""
    return str(current_app.config["ROSTER"]["app"]["base_url"]).rstrip("/")


def sp_keys() -> SpKeys:
    """The SP key pairs, loaded once per app."""
    keys = current_app.extensions.get("roster.sso_keys")
    if keys is None:
        keys = current_app.extensions["roster.sso_keys"] = load_sp_keys(sso_settings())
    return keys


def signing_sp_keys(conn: SsoConnection) -> SpKeys:
    """The SP keys for a connection's AuthnRequest or metadata; a connection asking for
    signed requests on a deployment without an SP key is logged each time (its requests go
    out unsigned, and an IdP that requires signed ones refuses the login)."""
    keys = sp_keys()
    if conn.sign_requests and keys.current is None:
        log.warning("connection %s (%s) has sign_requests on, but no SP key is configured "
                    "(sso.sp_key_file, sso.sp_cert_file): its AuthnRequests go out unsigned "
                    "and its metadata says AuthnRequestsSigned=\"false\"", conn.id, conn.name)
    return keys


def app_sealer(purpose: bytes) -> Sealer | None:
    """The keys sealing ``purpose``: app.secret_key's, then app.previous_secret_key's (a
    rotation); None without app.secret_key (development)."""
    key = current_app.secret_key
    if not key:
        return None
    return sealer(purpose, str(key), current_app.config["ROSTER"]["app"]["previous_secret_key"])


def provider_cache() -> ProviderCache:
    """The app's cache of OIDC discovery documents and JWKS (customer IdPs)."""
    cache: ProviderCache | None = current_app.extensions.get("roster.oidc_providers")
    if cache is None:  # built once per app, bounded by its [sso] idp_* settings
        cache = current_app.extensions.setdefault(
            "roster.oidc_providers",
            ProviderCache.from_settings(current_app.config["ROSTER"]["sso"]))
    return cache


def sp_urls(connection_id: str) -> SpUrls:
    """The SAML SP endpoints of a connection."""
    return SpUrls.of(base_url(), connection_id)


def actor() -> Actor:
    """The browser behind this request, as the audit log names it."""
    return Actor(type="sso", request_id=g.get("request_id"), ip=request.remote_addr,
                 user_agent=request.user_agent.string[:200] or None)


def allowed(url: str | None) -> bool:
    """Whether ``url`` is a portal URL we may send the browser to (no open redirect)."""
    # Our own authorization endpoint is a valid place to come back to (portal OIDC flow).
    own = base_url() + "/sso/oidc/authorize"
    return bool(url) and is_allowed_redirect(url or "", [*sso_settings()["allowed_redirect_urls"],
                                                          own])


@dataclass(frozen=True)
class ConnRef:
    """The few connection fields a failure needs after its transaction rolled back."""

    id: str
    organization_id: str
    protocol: str


_PROTOCOL_NAMES = {"saml": "a SAML", "oidc": "an OIDC"}


def found_connection(s: Session, connection_id: str, protocol: str, *,
                     hold: bool = False) -> tuple[SsoConnection | None, ConnRef | None]:
    """The connection an endpoint of ``protocol`` names, enabled or not (``hold``: its row
    held until the login commits, app/sso/connection_sessions.py hold_connection), and what
    a refusal's trace names: the organization and connection of a connection of that
    protocol, nothing for an id that names none (or names one of the other protocol). An
    id longer than any (36 characters) is not looked up."""
    conn = None
    if len(connection_id) <= 36:
        conn = (hold_connection(s, connection_id) if hold
                else s.get(SsoConnection, connection_id))
    if conn is None or conn.protocol != protocol:
        return conn, None
    return conn, ConnRef(conn.id, conn.organization_id, conn.protocol)


def require_connection(conn: SsoConnection | None, connection_id: str,
                       protocol: str) -> SsoConnection:
    """The enabled connection of ``protocol``, or a refusal (traced by :func:`fail`) saying
    why: ``unknown_connection`` (no such connection, or one of the other protocol; the
    detail quotes at most 36 characters of the id) or ``connection_disabled``."""
    name = _PROTOCOL_NAMES[protocol]
    if conn is None:
        raise LoginFailed("unknown_connection", f"no connection {connection_id[:36]}")
    if conn.protocol != protocol:
        raise LoginFailed("unknown_connection",
                          f"the connection {conn.id} is not {name} connection")
    if not conn.enabled:
        raise LoginFailed("connection_disabled",
                          f"the {protocol.upper()} connection {conn.id} is disabled")
    return conn


def fail(exc: LoginFailed, conn: ConnRef | None, payload: dict[str, Any], *,
         protocol: str) -> Response:
    """Record the trace (and the audit event for refused users); show the plain page.

    ``protocol`` is the endpoint's (saml or oidc), recorded when no connection was found.

    A refusal before an IdP vouched for a subject (a forged, replayed or expired Response,
    a bad state, an unknown connection) is one anyone can cause, as often as they like, and
    each wrote a trace row (and on SQLite took the single write lock). These count as failed
    authentications of the client's address (``ratelimit.failed_auth``,
    app/api/authlimit.py); past the limit the address gets a plain ``429`` page with
    ``Retry-After`` and nothing is written. A refusal the client did not cause (the
    connection's IdP down or misbehaving, the connection disabled or misconfigured) is not
    counted: its traces are bounded per connection and reason instead
    (app/sso/fault_traces.py). Refusals of a subject the IdP signed for (an unknown or
    deprovisioned user) are always traced and audited.
    """
    if conn is not None and not_caused_by_client(exc):
        return _not_the_clients(exc, conn, payload)
    limiter = current_app.extensions.get("roster.failed_auth")
    anonymous = exc.subject is None and isinstance(limiter, FailedAuthLimiter)
    address = client_key(request.remote_addr)
    if anonymous:
        retry_after = limiter.blocked_for(address)
        if retry_after is not None:
            return _too_many(exc, retry_after)
    trace_id = _write_trace(exc, conn, payload, protocol)
    if anonymous:
        _count_failure(limiter, address)
    return _refused(exc, trace_id)


def _refused(exc: LoginFailed, trace_id: str | None) -> Response:
    return pages.refused(_MESSAGES.get(exc.reason, "We could not sign you in."), trace_id)


def _write_trace(exc: LoginFailed, conn: ConnRef | None, payload: dict[str, Any],
                 protocol: str, trace_id: str | None = None) -> str:
    """Write the refusal's trace (and audit event, for a refused user); its id."""
    who = actor()
    with database().transaction() as s:
        # A connection deleted while the login ran (it was refused for that) is not named:
        # the trace's foreign key would make the refusal a 500. Its organization is: the
        # trace is listed there. Held (PostgreSQL FOR KEY SHARE): a delete in flight is
        # waited for and read as gone, and a later one waits for this trace, whose row it
        # then deletes with the connection's.
        gone = conn is not None and hold_connection(s, conn.id) is None
        trace = record_trace(
            s, organization_id=conn.organization_id if conn else None,
            connection_id=conn.id if conn and not gone else None,
            protocol=conn.protocol if conn else protocol,
            reason=exc.reason, detail=exc.detail, subject=exc.subject,
            payload={**payload, **exc.payload}, request_id=who.request_id, trace_id=trace_id)
        if conn is not None and exc.reason in _USER_REFUSALS:
            record(s, organization_id=conn.organization_id, action="sso:login:denied",
                   actor=who, subject_type="user", subject_id=exc.payload.get("user_id"),
                   data={"reason": exc.reason, "connection_id": conn.id,
                         "correlation_id": trace.id})
    log.warning("sso login refused", extra={"reason": exc.reason, "correlation_id": trace.id,
                                            **({"untraced_repeats": payload["untraced_repeats"]}
                                               if "untraced_repeats" in payload else {})})
    return trace.id


def _not_the_clients(exc: LoginFailed, conn: ConnRef, payload: dict[str, Any]) -> Response:
    """A refusal the client did not cause: not counted against its address, never a 429;
    traced once per connection and reason per interval (app/sso/fault_traces.py), the
    others shown that trace's correlation id once it is stored, and counted."""
    faults: FaultTraces = current_app.extensions.setdefault("roster.sso_fault_traces",
                                                            FaultTraces())
    for _ in range(2):  # a trace another refusal failed to write: claim again, once
        claim = faults.claim(conn.id, exc.reason)
        if claim.write:
            return _refused(exc, _write_claimed(faults, claim, exc, conn, payload))
        stored = faults.stored(claim)  # its id shown once it is stored (fault_traces.py)
        if stored is not False:
            break
    metrics = current_app.extensions.get("roster.metrics")
    if metrics is not None:
        metrics.untraced_sso_refusal(exc.reason)
    return _refused(exc, claim.trace_id if stored else None)


def _write_claimed(faults: FaultTraces, claim: Claim, exc: LoginFailed, conn: ConnRef,
                   payload: dict[str, Any]) -> str:
    """Write the trace ``claim`` won; tell those waiting to show its id how it went."""
    if claim.repeats_before:
        payload = {**payload, "untraced_repeats": {"count": claim.repeats_before,
                                                   "correlation_id": claim.previous_id}}
    try:
        trace_id = _write_trace(exc, conn, payload, conn.protocol, claim.trace_id)
    except BaseException:
        faults.release(conn.id, exc.reason, claim)
        raise
    faults.written(claim)
    return trace_id


_BLOCKED_LOG = EveryInterval(60.0)


def _too_many(exc: LoginFailed, retry_after: int) -> Response:
    """A refusal from an address past the failed-authentication limit: no trace, no write,
    and one log line a minute at most (a flood must not fill the log instead)."""
    if _BLOCKED_LOG.due():
        log.warning("sso refusals are not traced while an address is over "
                    "ratelimit.failed_auth", extra={"reason": exc.reason})
    response = pages.page(
        "Too many sign-in attempts",
        f"<p>Too many sign-ins from your network were refused. Try again in {retry_after} "
        "seconds.</p>", 429)
    response.headers["Retry-After"] = str(retry_after)
    return response


def _count_failure(limiter: FailedAuthLimiter, address: str) -> None:
    try:
        limiter.count_failure(address)
    except SQLAlchemyError as exc:  # the refusal stands; counting is best effort
        log.warning("a refused sign-in was not counted: %s", exc)


def finish(login_id: str, user_id: str, display: str, relay_state: str | None) -> Response:
    """Bind the login to the browser and go back to an allowed portal URL."""
    # Without app.secret_key (development) there is no signed cookie to bind the login to.
    if current_app.secret_key:
        # A fresh cookie for the new login (no session fixation); only the note of when the
        # portal's request asked for this login survives it (app/sso/provider_prompt.py).
        asked = session.get(REAUTH)
        session.clear()
        session["sso_login_id"], session["sso_user_id"] = login_id, user_id
        if asked:
            session[REAUTH] = asked
    target = relay_state if allowed(relay_state) else sso_settings()["default_redirect_url"]
    if target and allowed(target):
        return redirect(target, 303)
    return pages.signed_in(display)
