"""OIDC relying-party endpoints on the /sso blueprint: login (authorization request), callback.

Registered by importing this module once, from create_app (app/__init__.py), before the
blueprint is registered. Failure pages, traces and the final redirect are the SAML ones.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from flask import Response, current_app, redirect, request, session

from app.errors import DomainError, InvalidInput
from app.models.sso import SsoConnection
from app.sso import pages
from app.sso.connection_sessions import hold_connection
from app.sso.login import open_session, resolve_login
from app.sso.oidc_attempts import ClaimedAttempt, begin_login, claim_attempt, state_key
from app.sso.oidc_config import algorithms_of, decrypt_client_secret
from app.sso.oidc_rp import Provider, callback_url, exchange_code
from app.sso.oidc_token import (
    Expected,
    asserted_identity,
    auth_time,
    unverified_parts,
    validate_id_token,
)
from app.sso.outcome import LoginFailed
from app.sso.rp_logout import LOGOUT_NEXT, LOGOUT_STATE, UPSTREAM_OIDC
from app.sso.sealed import PKCE_VERIFIER, UPSTREAM_ID_TOKEN, Sealer
from app.sso.traces import mask, redact_claims
from app.sso.views import bp
from app.sso.web import (
    ConnRef,
    actor,
    allowed,
    app_sealer,
    base_url,
    database,
    fail,
    finish,
    found_connection,
    provider_cache,
    require_connection,
)
from app.sso.web import sso_settings as _sso

_BOUND_STATES = "oidc_states"
IDP_FAILURES = frozenset({"server_error", "temporarily_unavailable"})
_MAX_PARALLEL_ATTEMPTS = 5


def _load(connection_id: str) -> tuple[SsoConnection | None, ConnRef | None]:
    """The connection, enabled or not, and what a refusal's trace names (found_connection)."""
    with database().transaction(readonly=True) as s:
        return found_connection(s, connection_id, "oidc")


def _ready(conn: SsoConnection) -> None:
    if not (conn.oidc_discovery_url and conn.oidc_client_id and conn.oidc_client_secret_enc):
        raise LoginFailed("misconfigured", "the connection lacks discovery URL, client id or "
                          "client secret")
    if not current_app.secret_key:
        raise LoginFailed("misconfigured", "app.secret_key is not set")


def _sealer(purpose: bytes) -> Sealer:
    """The keys sealing ``purpose`` (``_ready`` made sure app.secret_key is set)."""
    keys = app_sealer(purpose)
    if keys is None:
        raise LoginFailed("misconfigured", "app.secret_key is not set")
    return keys


def _redirect_uri(connection_id: str) -> str:
    return callback_url(base_url(), connection_id)


@bp.get("/oidc/<connection_id>/login")
def oidc_login(connection_id: str) -> Response:
    """Send the browser to the IdP with state, nonce and PKCE S256 (OIDC Core §3.1.2.1)."""
    next_url = request.args.get("next") or _sso()["default_redirect_url"] or None
    if next_url and not allowed(next_url):
        return pages.refused("The page to return to is not allowed.", None, 400)
    ref: ConnRef | None = None
    try:
        found, ref = _load(connection_id)
        conn = require_connection(found, connection_id, "oidc")
        _ready(conn)
        # The IdP is read outside any database transaction.
        provider = provider_cache().provider(conn.oidc_discovery_url or "")
        with database().transaction() as s:
            start = begin_login(s, conn, provider, _redirect_uri(conn.id), next_url,
                                _sso()["request_ttl_seconds"], _sealer(PKCE_VERIFIER),
                                reauth=request.args.get("reauth") == "1")
    except LoginFailed as exc:
        return fail(exc, ref, {}, protocol="oidc")
    # Bind the attempt to this browser (signed cookie): a callback carrying a state issued
    # to someone else is refused, so nobody can be logged in as the attacker (login CSRF).
    bound = [*session.get(_BOUND_STATES, [])[-(_MAX_PARALLEL_ATTEMPTS - 1):],
             state_key(start.state)]
    session[_BOUND_STATES] = bound
    return redirect(start.url, 303)


def _claim(connection_id: str, state: str) -> tuple[SsoConnection, ClaimedAttempt]:
    """Use the attempt in its own transaction, so a failure later never makes it reusable."""
    key = state_key(state) if state else ""
    bound = session.get(_BOUND_STATES, [])
    with database().transaction() as s:
        # Held as the login's last step holds it: a delete in flight (which drops the
        # attempt with its connection) is waited for and read as such, not as a replayed
        # state (the attempt gone).
        conn = require_connection(hold_connection(s, connection_id), connection_id, "oidc")
        if not state or not any(hmac.compare_digest(key, b) for b in bound if isinstance(b, str)):
            raise LoginFailed("bad_state", "the state was not issued to this browser")
        session[_BOUND_STATES] = [b for b in bound if b != key]
        return conn, claim_attempt(s, conn, state, _sealer(PKCE_VERIFIER))


def _verified_claims(conn: SsoConnection, provider: Provider, attempt: ClaimedAttempt,
                     payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Redeem the code and validate the ID token (OIDC Core §3.1.3): (token, its claims)."""
    args = request.args
    if args.get("error"):
        # RFC 6749 §4.1.2.1: these two say the IdP failed, not the request; any other
        # (access_denied ...) may be the user's or a client's doing, as any query can be.
        raise LoginFailed("idp_error", f"{args['error']}: {args.get('error_description', '')}"
                          [:500], idp_fault=args["error"] in IDP_FAILURES)
    # RFC 9207 §2.4: an IdP that names itself in the response must be the one we asked,
    # and a response without iss from an IdP whose metadata says it sends one is refused.
    if args.get("iss") is not None and args["iss"] != provider.issuer:
        raise LoginFailed("wrong_issuer", f"the response comes from {args['iss']!r}")
    if args.get("iss") is None and provider.iss_parameter:
        raise LoginFailed("wrong_issuer", "the response has no iss, though the IdP's "
                          "metadata says it always sends one (RFC 9207)")
    if not args.get("code"):
        raise LoginFailed("missing_code", "the callback carries no code")
    try:
        secret = decrypt_client_secret(
            current_app.secret_key or "", conn.oidc_client_secret_enc or "",
            current_app.config["ROSTER"]["app"]["previous_secret_key"])
    except InvalidInput as exc:
        raise LoginFailed("misconfigured", exc.detail) from None
    id_token = exchange_code(provider, conn.oidc_client_id or "", secret,
                             _redirect_uri(conn.id), args["code"], attempt.code_verifier,
                             private_ok=provider_cache().private_ok)
    header, unverified = unverified_parts(id_token)
    payload["id_token"] = {"header": header, "claims": redact_claims(unverified)}
    expected = Expected(issuer=provider.issuer, client_id=conn.oidc_client_id or "",
                        nonce=attempt.nonce, algorithms=tuple(algorithms_of(conn)),
                        skew_seconds=_sso()["clock_skew_seconds"])
    return id_token, validate_id_token(
        id_token, expected,
        lambda refresh: provider_cache().jwks(provider.jwks_uri, refresh=refresh), time.time())


@bp.get("/oidc/<connection_id>/callback")
def oidc_callback(connection_id: str) -> Response:
    """Redirection endpoint: state, code exchange with PKCE, ID token, then the login policy."""
    payload: dict[str, Any] = {"callback": {
        "state": mask(request.args.get("state", "")), "code": bool(request.args.get("code")),
        "iss": request.args.get("iss"), "error": request.args.get("error")}}
    ref: ConnRef | None = None
    try:
        found, ref = _load(connection_id)
        _ready(require_connection(found, connection_id, "oidc"))
        conn, attempt = _claim(connection_id, request.args.get("state", ""))
        provider = provider_cache().provider(conn.oidc_discovery_url or "")
        id_token, claims = _verified_claims(conn, provider, attempt, payload)
        kept: LoginFailed | None = None
        with database().transaction() as s:
            # Held until the login commits: a disable or delete in flight is waited for (and
            # then refused: connection_disabled, or unknown_connection when deleted).
            conn = require_connection(hold_connection(s, connection_id), connection_id,
                                      "oidc")
            try:
                user = resolve_login(s, conn, asserted_identity(conn, claims), actor())
            except LoginFailed as exc:
                if not exc.keep_changes:
                    raise
                kept = exc  # refused after JIT took the user out: that change commits
            else:
                login = open_session(s, conn, user, actor(), detail={"issuer": provider.issuer},
                                     authenticated_at=auth_time(claims))
                # The IdP's ID token is the id_token_hint of a later RP-initiated logout at
                # the IdP (OIDC RP-Initiated Logout §2): kept sealed with the login, not in
                # the browser's cookie (signed, not encrypted, and limited to 4 KB).
                login.upstream_id_token = _sealer(UPSTREAM_ID_TOKEN).seal(id_token)
                display, login_id, user_id = (user.display_name or user.user_name, login.id,
                                              user.id)
        if kept is not None:
            raise kept
    except LoginFailed as exc:
        return fail(exc, ref, payload, protocol="oidc")
    except DomainError as exc:
        return fail(LoginFailed("provisioning_error", exc.detail), ref, payload,
                    protocol="oidc")
    response = finish(login_id, user_id, display, attempt.redirect_to)
    if current_app.secret_key:
        session[UPSTREAM_OIDC] = {"connection": connection_id}
    return response


@bp.get("/oidc/<connection_id>/logged-out")
def oidc_logged_out(connection_id: str) -> Response:
    """post_logout_redirect_uri of the IdP's logout (OIDC RPIL §3): on to the portal.

    Only the state this browser was given when its logout went to the IdP finishes that
    logout (clears the cookie, leads on); any other visit (a cross-site GET) changes
    nothing, so no page can sign a browser out through here (logout CSRF)."""
    expected, next_url = session.get(LOGOUT_STATE), session.get(LOGOUT_NEXT)
    sent = request.args.get("state", "")
    # As bytes: hmac.compare_digest raises on a str with non-ASCII characters (a 500).
    if not (isinstance(expected, str) and sent
            and hmac.compare_digest(sent.encode(), expected.encode())):
        return pages.page("Sign-out", "<p>There is no sign-out in progress here.</p>")
    session.clear()
    # The target was checked against the portal's registered URIs when it was stored.
    if isinstance(next_url, str):
        return redirect(next_url, 303)
    return pages.page("Signed out", "<p>You are signed out.</p>")
