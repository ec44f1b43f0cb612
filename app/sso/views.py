"""The /sso blueprint: SAML SP endpoints per connection and home-realm discovery."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, g, redirect, request, session
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import Database
from app.errors import DomainError
from app.models.sso import SsoConnection
from app.sso import pages
from app.sso.connections import connections_for_email
from app.sso.keys import SpKeys, load_sp_keys
from app.sso.login import assert_user, open_session, resolve_login
from app.sso.outcome import LoginFailed
from app.sso.redirects import is_allowed_redirect
from app.sso.saml import SpUrls, consume_response, decode_response_xml, sp_metadata, start_login
from app.sso.slo import (
    SamlSubject,
    consume_logout,
    revoke_login_session,
    start_logout,
    subject_payload,
)
from app.sso.traces import record_trace, redact_saml

bp = Blueprint("sso", __name__, url_prefix="/sso")
log = logging.getLogger("roster.sso")

# Messages the user sees per reason; everything else gets the generic one.
_MESSAGES = {
    "user_deprovisioned": "Your account has been deactivated. Contact your administrator.",
    "user_inactive": "Your account is not active. Contact your administrator.",
    "unknown_user": "Your account is not provisioned for this organization.",
}
_USER_REFUSALS = frozenset({"user_deprovisioned", "user_inactive", "unknown_user"})


def _db() -> Database:
    return current_app.extensions["roster.db"]


def _sso() -> dict[str, Any]:
    return current_app.config["ROSTER"]["sso"]


def _keys() -> SpKeys:
    keys = current_app.extensions.get("roster.sso_keys")
    if keys is None:
        keys = current_app.extensions["roster.sso_keys"] = load_sp_keys(_sso())
    return keys


def _urls(connection_id: str) -> SpUrls:
    return SpUrls.of(current_app.config["ROSTER"]["app"]["base_url"], connection_id)


def _actor() -> Actor:
    return Actor(type="sso", request_id=g.get("request_id"), ip=request.remote_addr,
                 user_agent=request.user_agent.string[:200] or None)


def _saml_connection(session: Session, connection_id: str) -> SsoConnection | None:
    conn = session.get(SsoConnection, connection_id) if len(connection_id) <= 36 else None
    if conn is None or conn.protocol != "saml" or not conn.enabled:
        return None
    return conn


def _allowed(url: str | None) -> bool:
    # Our own authorization endpoint is a valid place to come back to (portal OIDC flow).
    own = current_app.config["ROSTER"]["app"]["base_url"].rstrip("/") + "/sso/oidc/authorize"
    return bool(url) and is_allowed_redirect(url or "", [*_sso()["allowed_redirect_urls"], own])


@bp.get("/saml/<connection_id>/metadata")
def saml_metadata(connection_id: str) -> Response:
    """SP metadata of one connection (SAML Metadata §2.4.4), at its entity id URL."""
    with _db().transaction(readonly=True) as s:
        conn = _saml_connection(s, connection_id)
        if conn is None:
            return pages.refused("Unknown sign-in connection.", None, 404)
        xml = sp_metadata(conn, _urls(conn.id), _keys())
    return Response(xml, mimetype="application/samlmetadata+xml")


@bp.get("/saml/<connection_id>/login")
def saml_login(connection_id: str) -> Response:
    """SP-initiated login: send the browser to the IdP with a remembered AuthnRequest."""
    next_url = request.args.get("next") or _sso()["default_redirect_url"] or None
    if next_url and not _allowed(next_url):
        return pages.refused("The page to return to is not allowed.", None, 400)
    with _db().transaction() as s:
        conn = _saml_connection(s, connection_id)
        if conn is None or not conn.idp_sso_url:
            return pages.refused("Unknown sign-in connection.", None, 404)
        url = start_login(s, conn, _urls(conn.id), _keys(), next_url,
                          _sso()["request_ttl_seconds"])
    return redirect(url, 303)


@dataclass(frozen=True)
class _ConnRef:
    """The few connection fields a failure needs after its transaction rolled back."""

    id: str
    organization_id: str
    protocol: str


def _require_saml(s: Session, connection_id: str) -> tuple[SsoConnection, _ConnRef]:
    """The enabled SAML connection, or a traced ``unknown_connection`` refusal."""
    conn = _saml_connection(s, connection_id)
    if conn is None:
        raise LoginFailed("unknown_connection", f"no SAML connection {connection_id}")
    return conn, _ConnRef(conn.id, conn.organization_id, conn.protocol)


def fail(exc: LoginFailed, conn: _ConnRef | None, payload: dict[str, Any]) -> Response:
    """Record the trace (and the audit event for refused users); show the plain page."""
    actor = _actor()
    with _db().transaction() as s:
        trace = record_trace(
            s, organization_id=conn.organization_id if conn else None,
            connection_id=conn.id if conn else None, protocol=conn.protocol if conn else "saml",
            reason=exc.reason, detail=exc.detail, subject=exc.subject,
            payload={**payload, **exc.payload}, request_id=actor.request_id,
            retention_days=_sso()["trace_retention_days"])
        if conn is not None and exc.reason in _USER_REFUSALS:
            record(s, organization_id=conn.organization_id, action="sso:login:denied",
                   actor=actor, subject_type="user", subject_id=exc.payload.get("user_id"),
                   data={"reason": exc.reason, "connection_id": conn.id,
                         "correlation_id": trace.id})
    log.warning("sso login refused", extra={"reason": exc.reason, "correlation_id": trace.id})
    return pages.refused(_MESSAGES.get(exc.reason, "We could not sign you in."), trace.id)


@bp.post("/saml/<connection_id>/acs")
def saml_acs(connection_id: str) -> Response:
    """Assertion Consumer Service, HTTP-POST binding (SAML Bindings §3.5)."""
    saml_response = request.form.get("SAMLResponse", "")
    payload = {"response": redact_saml(decode_response_xml(saml_response))}
    ref: _ConnRef | None = None
    try:
        with _db().transaction() as s:
            conn, ref = _require_saml(s, connection_id)
            if not saml_response:
                raise LoginFailed("malformed_response", "no SAMLResponse in the POST")
            identity = consume_response(s, conn, _urls(conn.id), _keys(), saml_response,
                                        request.form.get("RelayState"),
                                        _sso()["clock_skew_seconds"])
            who = assert_user(conn, identity.name_id, identity.attributes)
            user = resolve_login(s, conn, who, _actor())
            login = open_session(s, conn, user, _actor(), detail={
                "assertion_id": identity.assertion_id, "idp_initiated": identity.idp_initiated})
            user_display = user.display_name or user.user_name
            login_id, user_id = login.id, user.id
    except LoginFailed as exc:
        return fail(exc, ref, payload)
    except DomainError as exc:
        return fail(LoginFailed("provisioning_error", exc.detail), ref, payload)
    response = _finish(login_id, user_id, user_display, identity.relay_state)
    if current_app.secret_key:
        # What single logout needs later (SAML Core §3.7.1): kept in the signed cookie.
        session["sso_saml"] = {"connection": connection_id, **subject_payload(SamlSubject(
            identity.name_id, identity.name_id_format, identity.session_index))}
    return response


def _finish(login_id: str, user_id: str, display: str, relay_state: str | None) -> Response:
    """Bind the login to the browser and go back to an allowed portal URL."""
    # Without app.secret_key (development) there is no signed cookie to bind the login to.
    if current_app.secret_key:
        session.clear()
        session["sso_login_id"], session["sso_user_id"] = login_id, user_id
    target = relay_state if _allowed(relay_state) else _sso()["default_redirect_url"]
    if target and _allowed(target):
        return redirect(target, 303)
    return pages.signed_in(display)


@bp.get("/login")
def login_page() -> Response:
    """Home-realm discovery: ask for the work email."""
    next_url = request.args.get("next", "")
    if next_url and not _allowed(next_url):
        return pages.refused("The page to return to is not allowed.", None, 400)
    return pages.discovery_form(next_url)


@bp.post("/discover")
def discover() -> Response:
    """Route alice@acme.com to Acme's connection; several: chooser; none: a clear page."""
    email, next_url = request.form.get("email", "").strip(), request.form.get("next", "")
    if next_url and not _allowed(next_url):
        return pages.refused("The page to return to is not allowed.", None, 400)
    with _db().transaction(readonly=True) as s:
        found = [(c.name, c.id, c.protocol) for c in connections_for_email(s, email)]
    if not found:
        return pages.discovery_form(
            next_url, "No sign-in is set up for this email domain. Check the address, or ask "
            "your administrator to connect your company.", 404)
    query = f"?{urlencode({'next': next_url})}" if next_url else ""
    options = [(name, f"/sso/{protocol}/{cid}/login{query}") for name, cid, protocol in found]
    if len(options) == 1:
        return redirect(options[0][1], 303)
    return pages.chooser(options)


# The OpenID Provider's routes register on this blueprint too (issuer = base_url + /sso/oidc).
from app.sso import provider_views  # noqa: E402, F401


@bp.get("/saml/<connection_id>/logout")
def saml_logout(connection_id: str) -> Response:
    """SP-initiated single logout: end our session, then ask the IdP (SAML Profiles §4.4.4)."""
    saml = session.get("sso_saml") or {}
    login_id = session.get("sso_login_id")
    if saml.get("connection") != connection_id or not isinstance(login_id, str):
        return pages.page("Signed out", "<p>You are not signed in.</p>")
    with _db().transaction() as s:
        conn = _saml_connection(s, connection_id)
        if conn is None:
            return pages.refused("Unknown sign-in connection.", None, 404)
        revoke_login_session(s, login_id, _actor(), "saml_logout")
        subject = SamlSubject(saml.get("name_id", ""), saml.get("format"),
                              saml.get("session_index"))
        try:
            url, request_id = start_logout(conn, _urls(conn.id), _keys(), subject)
        except LoginFailed:
            url, request_id = None, None
    session.clear()
    if url is None:
        return pages.page("Signed out", "<p>You are signed out of the portal.</p>")
    session["sso_slo_request"] = request_id
    return redirect(url, 303)


@bp.get("/saml/<connection_id>/slo")
def saml_slo(connection_id: str) -> Response:
    """SingleLogoutService (HTTP-Redirect): the IdP's LogoutResponse or LogoutRequest."""
    get = request.args.to_dict()
    ref: _ConnRef | None = None
    try:
        with _db().transaction() as s:
            conn, ref = _require_saml(s, connection_id)
            url, name_id = consume_logout(conn, _urls(conn.id), _keys(), get,
                                          session.get("sso_slo_request"))
            saml = session.get("sso_saml") or {}
            login_id = session.get("sso_login_id")
            # IdP-initiated: only the login this browser holds, and only for that subject.
            if name_id is not None and saml.get("connection") == connection_id \
                    and saml.get("name_id") == name_id and isinstance(login_id, str):
                revoke_login_session(s, login_id, _actor(), "saml_idp_logout")
    except LoginFailed as exc:
        return fail(exc, ref, {"binding": "redirect", "message": sorted(get)})
    session.clear()
    if url:
        return redirect(url, 303)
    return pages.page("Signed out", "<p>You are signed out.</p>")
