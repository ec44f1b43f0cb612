"""The /sso blueprint: SAML SP endpoints per connection and home-realm discovery."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, jsonify, redirect, request, session
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.db_errors import describe_transient, is_transient
from app.errors import DomainError
from app.mapping.locks import retry_after
from app.migrate import NOT_READY_RETRY_AFTER, schema_not_ready
from app.models.sso import SsoConnection
from app.sso import pages, saml_binding
from app.sso.confirm import confirmation_page, confirmed
from app.sso.connections import connections_for_email
from app.sso.login import assert_user, open_session, resolve_spending
from app.sso.outcome import LoginFailed
from app.sso.rp_logout import LOGOUT_NEXT
from app.sso.saml import consume_response, decode_response_xml, sp_metadata, start_login
from app.sso.slo import (
    SamlSubject,
    consume_logout,
    revoke_login_session,
    start_logout,
    subject_payload,
)
from app.sso.subject_links import stable_name_id
from app.sso.traces import redact_saml
from app.sso.web import (
    ConnRef,
    actor,
    allowed,
    database,
    fail,
    finish,
    found_connection,
    require_connection,
    signing_sp_keys,
    sp_keys,
    sp_urls,
)
from app.sso.web import sso_settings as _sso

bp = Blueprint("sso", __name__, url_prefix="/sso")
log = logging.getLogger(__name__)

# The OIDC provider's endpoints the portal calls itself (not a browser): they answer JSON,
# errors too (by path: a 405 or 413 is raised before an endpoint is known).
SSO_JSON_PATHS = ("/sso/oidc/.well-known/", "/sso/oidc/jwks", "/sso/oidc/token",
                  "/sso/oidc/introspect", "/sso/oidc/revoke", "/sso/oidc/userinfo")
# With the token endpoint for IdPs (app/scim/oauth.py): every path whose errors, the app's
# (app/__init__.py) and gunicorn's (app/ops/http_worker.py), are OAuth's JSON.
OAUTH_JSON_PATHS = ("/oauth/", *SSO_JSON_PATHS)


def unexpected_error(request_id: str | None) -> Response:
    """The answer to an unexpected error under /sso (logged with ``request_id`` by the app's
    handler, which covers /sso paths no view matched too): a plain page quoting the id, or,
    on the provider's endpoints the portal calls, OAuth's ``server_error`` (RFC 6749
    §4.1.2.1) in JSON, the format its token, introspection and revocation errors take."""
    if request.path.startswith(SSO_JSON_PATHS):
        response = jsonify(error="server_error", request_id=request_id,
                           error_description="an unexpected error occurred; quote the "
                                             "request id")
        response.status_code = 500
        return response
    return pages.failed(request_id)


@bp.errorhandler(DBAPIError)
def _database_error(exc: DBAPIError) -> Response:
    """A lock timeout, deadlock or lost connection rolled the whole sign-in back: 503 with
    ``Retry-After`` (RFC 9110 §15.6.4), as a page the browser shows or, for the provider's
    back-channel endpoints, OAuth's ``temporarily_unavailable`` (RFC 6749 §4.1.2.1) in
    JSON. Any other database error stays an unexpected error (500, logged)."""
    if is_transient(exc):
        log.warning("sign-in request hit a transient database error: %s",
                    describe_transient(exc))
        retry = retry_after(current_app.extensions["roster.db"].engine, exc)
    elif schema_not_ready(current_app.extensions["roster.db"].engine, exc):
        retry = NOT_READY_RETRY_AFTER  # not upgraded yet: logged by schema_not_ready
    else:
        raise exc
    if request.path.startswith(SSO_JSON_PATHS):
        response = jsonify(error="temporarily_unavailable",
                           error_description="the service is busy; retry the request")
        response.status_code = 503
    else:
        response = pages.page("Sign-in interrupted", "<p>The service was busy and nothing "
                              "was changed. Please try again.</p>", 503)
    response.headers["Retry-After"] = retry
    return response


@bp.before_request
def _refuse_nul() -> Response | None:
    """A NUL in the path, the query or a posted form: no connection id, state, code or
    client holds one, and PostgreSQL cannot even compare such text, so the request is
    refused here (400) before any lookup, on both databases: a plain page for a browser, and
    OAuth's ``invalid_request`` in JSON on the endpoints the portal calls itself (RFC 6749
    §5.2, RFC 7662 §2.3, RFC 7009 §2.2.1, RFC 6750 §3.1), which got the page before."""
    values = [*(request.view_args or {}).values(),
              *(value for _key, value in request.args.items(multi=True))]
    if request.method == "POST" and request.mimetype in ("application/x-www-form-urlencoded",
                                                         "multipart/form-data"):
        values += [value for _key, value in request.form.items(multi=True)]
    if not any(isinstance(value, str) and "\x00" in value for value in values):
        return None
    if not request.path.startswith(SSO_JSON_PATHS):
        return pages.refused("The sign-in request holds a NUL character.", None, 400)
    response = jsonify(error="invalid_request",
                       error_description="the request holds a NUL character")
    response.status_code = 400
    response.headers["Cache-Control"] = "no-store"
    if request.path.startswith("/sso/oidc/userinfo"):
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_request"'
    return response


def _saml_connection(session: Session, connection_id: str) -> SsoConnection | None:
    """The enabled SAML connection (None: none, or disabled)."""
    if len(connection_id) > 36:
        return None
    conn = session.get(SsoConnection, connection_id)
    if conn is None or conn.protocol != "saml" or not conn.enabled:
        return None
    return conn


@bp.get("/saml/<connection_id>/metadata")
def saml_metadata(connection_id: str) -> Response:
    """SP metadata of one connection (SAML Metadata §2.4.4), at its entity id URL."""
    with database().transaction(readonly=True) as s:
        conn = _saml_connection(s, connection_id)
        if conn is None:
            return pages.refused("Unknown sign-in connection.", None, 404)
        xml = sp_metadata(conn, sp_urls(conn.id), signing_sp_keys(conn))
    return Response(xml, mimetype="application/samlmetadata+xml")


@bp.get("/saml/<connection_id>/login")
def saml_login(connection_id: str) -> Response:
    """SP-initiated login: send the browser to the IdP with a remembered AuthnRequest.

    A refusal is traced as the ACS's are: a disabled connection as ``connection_disabled``
    in its organization, an id naming no SAML connection as ``unknown_connection``, a
    connection without the IdP's SSO URL as ``misconfigured``."""
    next_url = request.args.get("next") or _sso()["default_redirect_url"] or None
    if next_url and not allowed(next_url):
        return pages.refused("The page to return to is not allowed.", None, 400)
    ref: ConnRef | None = None
    try:
        with database().transaction() as s:
            found, ref = found_connection(s, connection_id, "saml")
            conn = require_connection(found, connection_id, "saml")
            if not conn.idp_sso_url:
                raise LoginFailed("misconfigured", "the connection has no IdP SSO URL "
                                  "(import the IdP's metadata)")
            # reauth=1: the portal asked for a new authentication (OIDC prompt=login,
            # max_age): the IdP must not rely on its own session (SAML Core §3.4.1
            # ForceAuthn).
            url, request_id = start_login(s, conn, sp_urls(conn.id), signing_sp_keys(conn),
                                          next_url, _sso()["request_ttl_seconds"],
                                          force_authn=request.args.get("reauth") == "1")
    except LoginFailed as exc:
        return fail(exc, ref, {}, protocol="saml")
    response = redirect(url, 303)
    saml_binding.remember(request, response, request_id, _sso()["request_ttl_seconds"])
    return response


def _saml_ref(connection_id: str) -> ConnRef | None:
    """What a refusal's trace names (app/sso/web.py found_connection), read-only."""
    with database().transaction(readonly=True) as s:
        return found_connection(s, connection_id, "saml")[1]


@bp.post("/saml/<connection_id>/acs")
def saml_acs(connection_id: str) -> Response:
    """Assertion Consumer Service, HTTP-POST binding (SAML Bindings §3.5)."""
    saml_response = request.form.get("SAMLResponse", "")
    payload = {"response": redact_saml(decode_response_xml(saml_response))}
    kept: LoginFailed | None = None
    try:
        # What a refusal's trace names, read before the login's transaction as the OIDC
        # callback reads it: a connection deleted while the ACS waited for it is refused
        # (unknown_connection) and traced in its organization, where an operator lists
        # traces, without the connection id (gone). Before, the OIDC callback's trace kept
        # the organization and the ACS's had none, found by no listing.
        ref = _saml_ref(connection_id)
        with database().transaction() as s:
            # Held until the login commits: a disable or delete waits for it, or it for
            # them and is refused (app/sso/connection_sessions.py).
            found, _ref = found_connection(s, connection_id, "saml", hold=True)
            conn = require_connection(found, connection_id, "saml")
            if not saml_response:
                raise LoginFailed("malformed_response", "no SAMLResponse in the POST")
            identity = consume_response(s, conn, sp_urls(conn.id), sp_keys(), saml_response,
                                        request.form.get("RelayState"),
                                        _sso()["clock_skew_seconds"],
                                        saml_binding.started(request))
            who = assert_user(conn, identity.name_id, identity.attributes,
                              stable_subject=stable_name_id(identity.name_id_format))
            # A refusal commits the Response's claim and replay-cache entry all the same
            # (and what a JIT took out), then is raised: the assertion is used up.
            resolved = resolve_spending(s, conn, who, actor())
            if isinstance(resolved, LoginFailed):
                kept = resolved
            else:
                user = resolved
                login = open_session(s, conn, user, actor(), detail={
                    "assertion_id": identity.assertion_id,
                    "idp_initiated": identity.idp_initiated},
                    authenticated_at=identity.authn_instant)
                user_display = user.display_name or user.user_name
                login_id, user_id = login.id, user.id
        if kept is not None:
            raise kept
    except LoginFailed as exc:
        return fail(exc, ref, payload, protocol="saml")
    except DomainError as exc:
        return fail(LoginFailed("provisioning_error", exc.detail), ref, payload,
                    protocol="saml")
    response = finish(login_id, user_id, user_display, identity.relay_state)
    if current_app.secret_key:
        # What single logout needs later (SAML Core §3.7.1): kept in the signed cookie.
        session["sso_saml"] = {"connection": connection_id, **subject_payload(SamlSubject(
            identity.name_id, identity.name_id_format, identity.session_index))}
    return response


@bp.get("/login")
def login_page() -> Response:
    """Home-realm discovery: ask for the work email."""
    next_url = request.args.get("next", "")
    if next_url and not allowed(next_url):
        return pages.refused("The page to return to is not allowed.", None, 400)
    return pages.discovery_form(next_url, reauth=request.args.get("reauth") == "1")


@bp.post("/discover")
def discover() -> Response:
    """Route alice@acme.com to Acme's connection; several: chooser; none: a clear page."""
    email, next_url = request.form.get("email", "").strip(), request.form.get("next", "")
    reauth = request.form.get("reauth") == "1"
    if next_url and not allowed(next_url):
        return pages.refused("The page to return to is not allowed.", None, 400)
    with database().transaction(readonly=True) as s:
        found = [(c.name, c.id, c.protocol) for c in connections_for_email(s, email)]
    if not found:
        return pages.discovery_form(
            next_url, "No sign-in is set up for this email domain. Check the address, or ask "
            "your administrator to connect your company.", 404, reauth=reauth)
    params = {**({"next": next_url} if next_url else {}), **({"reauth": "1"} if reauth else {})}
    query = f"?{urlencode(params)}" if params else ""
    options = [(name, f"/sso/{protocol}/{cid}/login{query}") for name, cid, protocol in found]
    if len(options) == 1:
        return redirect(options[0][1], 303)
    return pages.chooser(options)


# The OpenID Provider's routes register on this blueprint too (issuer = base_url + /sso/oidc).
from app.sso import provider_views  # noqa: E402, F401


@bp.route("/saml/<connection_id>/logout", methods=["GET", "POST"])
def saml_logout(connection_id: str) -> Response:
    """SP-initiated single logout: end our session, then ask the IdP (SAML Profiles §4.4.4).

    Only the user's confirmed POST ends anything: a GET shows the confirmation page (any
    site could send the browser here: logout CSRF)."""
    saml = session.get("sso_saml") or {}
    login_id = session.get("sso_login_id")
    if saml.get("connection") != connection_id or not isinstance(login_id, str):
        return pages.page("Signed out", "<p>You are not signed in.</p>")
    if not confirmed():
        return confirmation_page(f"/sso/saml/{connection_id}/logout")
    with database().transaction() as s:
        conn = _saml_connection(s, connection_id)
        if conn is None:
            return pages.refused("Unknown sign-in connection.", None, 404)
        revoke_login_session(s, login_id, actor(), "saml_logout")
        subject = SamlSubject(saml.get("name_id", ""), saml.get("format"),
                              saml.get("session_index"))
        try:
            url, request_id = start_logout(conn, sp_urls(conn.id), sp_keys(), subject)
        except LoginFailed:
            url, request_id = None, None
    session.clear()
    if url is None:
        return pages.page("Signed out", "<p>You are signed out of the portal.</p>")
    session["sso_slo_request"] = request_id
    return redirect(url, 303)


@bp.get("/saml/<connection_id>/slo")
def saml_slo(connection_id: str) -> Response:
    """SingleLogoutService (HTTP-Redirect): the IdP's LogoutResponse or LogoutRequest.

    Both must be signed by the IdP (SAML Profiles §4.4.3.4), and each acts on this browser
    only when it concerns it: a LogoutResponse must answer the LogoutRequest this browser
    sent (InResponseTo), a LogoutRequest must name this browser's subject. Anything else
    (a validly signed message captured elsewhere and replayed cross-site) leaves the
    browser's sign-in alone: no logout CSRF."""
    get = request.args.to_dict()
    ref: ConnRef | None = None
    pending = session.get("sso_slo_request")
    try:
        with database().transaction() as s:
            found, ref = found_connection(s, connection_id, "saml")
            conn = require_connection(found, connection_id, "saml")
            if "SAMLResponse" in get and not isinstance(pending, str):
                raise LoginFailed("slo_unsolicited", "a LogoutResponse, but this browser "
                                  "sent no LogoutRequest")
            url, name_id = consume_logout(conn, sp_urls(conn.id), sp_keys(), get,
                                          pending if isinstance(pending, str) else None)
            saml = session.get("sso_saml") or {}
            login_id = session.get("sso_login_id")
            # IdP-initiated: only the login this browser holds, and only for that subject
            # (a LogoutRequest whose NameID cannot be read names no one here).
            ours = "SAMLRequest" not in get or (
                name_id is not None and saml.get("connection") == connection_id
                and saml.get("name_id") == name_id and isinstance(login_id, str))
            if name_id is not None and ours and isinstance(login_id, str):
                revoke_login_session(s, login_id, actor(), "saml_idp_logout")
    except LoginFailed as exc:
        return fail(exc, ref, {"binding": "redirect", "message": sorted(get)},
                    protocol="saml")
    # Set by the portal's RP-initiated logout (already checked against its registered URIs).
    next_url = session.get(LOGOUT_NEXT)
    if not ours:
        # Another subject's LogoutRequest: answer the IdP, keep this browser's sign-in.
        return redirect(url, 303) if url else pages.page(
            "Signed out", "<p>You are signed out.</p>")
    session.clear()
    if url:
        return redirect(url, 303)
    if isinstance(next_url, str):
        return redirect(next_url, 303)
    return pages.page("Signed out", "<p>You are signed out.</p>")
