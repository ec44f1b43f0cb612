"""HTTP endpoints of the OpenID Provider under /sso/oidc (issuer = base_url + /sso/oidc)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

from authlib.common.urls import add_params_to_uri
from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oidc.core.errors import LoginRequiredError
from flask import Flask, Response, current_app, g, jsonify, redirect, request, session
from sqlalchemy.orm import Session

from app.db import Database, utcnow
from app.models import User
from app.models.directory import UserStatus
from app.models.sso import LoginSession, SsoConnection
from app.sso import pages
from app.sso import provider_prompt as prompt
from app.sso.claims import filter_by_scope, user_claims
from app.sso.confirm import confirmation_page, confirmed
from app.sso.oidc_rp import logged_out_url
from app.sso.outcome import LoginFailed
from app.sso.provider import PortalClient, PortalServer, RequiredS256, build_grants
from app.sso.provider_config import PREFIX, ProviderConfig, config_from_settings
from app.sso.provider_endpoints import build_endpoints, discovery_document
from app.sso.provider_tokens import (
    ACCESS,
    Principal,
    TokenView,
    live_token,
    save_token,
    token_generator,
)
from app.sso.rp_logout import (
    LOGOUT_NEXT,
    LOGOUT_STATE,
    Upstream,
    end_login_sessions,
    end_session_endpoint,
    oidc_logout_url,
    plan_upstream,
)
from app.sso.sealed import UPSTREAM_ID_TOKEN
from app.sso.views import bp
from app.sso.web import actor, app_sealer, base_url, provider_cache, sp_keys, sp_urls


def _db() -> Session:
    """The current request's database session (opened by each endpoint)."""
    return g.roster_oidc_session


def provider_config(app: Flask) -> ProviderConfig | None:
    """Resolve [oidc_provider] once per app; None when no signing key is configured."""
    if "roster.oidc_config" not in app.extensions:
        app.extensions["roster.oidc_config"] = config_from_settings(app.config["ROSTER"])
    return app.extensions["roster.oidc_config"]


def _server() -> tuple[AuthorizationServer, ProviderConfig]:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    config = provider_config(app)
    if config is None:
        raise OAuth2Error("OIDC provider is not configured", status_code=503)
    server = app.extensions.get("roster.oidc_server")
    if server is None:
        client = PortalClient(config.client_id, config.client_secret_sha256,
                              config.redirect_uris, config.post_logout_redirect_uris,
                              config.auth_method)
        server = PortalServer(
            query_client=lambda cid: client if cid == client.client_id else None,
            save_token=lambda token, req: save_token(_db(), config, token, req))
        server.init_app(app)
        server.register_token_generator("default", token_generator(config))
        code_grant, refresh_grant, openid = build_grants(_db, config, actor)
        server.register_grant(code_grant, [openid, RequiredS256(required=True)])
        server.register_grant(refresh_grant)
        introspection, revocation = build_endpoints(_db, config)
        server.register_endpoint(introspection)
        server.register_endpoint(revocation)
        server.register_endpoint(end_session_endpoint(config))
        app.extensions["roster.oidc_server"] = server
    return server, config


def _transaction(*, readonly: bool = False) -> Any:
    database: Database = current_app.extensions["roster.db"]
    return database.transaction(readonly=readonly)


def _error(exc: OAuth2Error) -> Response:
    """An OAuth error answered here rather than by authlib (a provider that is not
    configured, a refusal of userinfo): ``no-store`` as authlib's own error answers
    (RFC 6749 §5.1, §5.2; RFC 6750 §3: the answer is about a token) and Roster's others."""
    response = jsonify(error=exc.error or "server_error", error_description=exc.description)
    response.status_code = exc.status_code or 400
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/oidc/.well-known/openid-configuration")
def discovery() -> Response:
    """OpenID Provider metadata (OIDC Discovery 1.0 §3)."""
    config = provider_config(current_app._get_current_object())  # type: ignore[attr-defined]
    if config is None:
        return _error(OAuth2Error("OIDC provider is not configured", status_code=503))
    return jsonify(discovery_document(config))


@bp.get("/oidc/jwks")
def jwks() -> Response:
    """Public keys, current and rotated (RFC 7517 §5)."""
    config = provider_config(current_app._get_current_object())  # type: ignore[attr-defined]
    if config is None:
        return _error(OAuth2Error("OIDC provider is not configured", status_code=503))
    return jsonify(config.keys.jwks())


def _browser_login(s: Session) -> LoginSession | None:
    """The browser's live login session, if any (bound by the SSO login), of a live user."""
    login_id = session.get("sso_login_id")
    login = s.get(LoginSession, login_id) if isinstance(login_id, str) else None
    if login is None or login.revoked_at is not None or (
            login.expires_at is not None and login.expires_at <= utcnow()):
        return None
    user = s.get(User, login.user_id)
    if user is None or not user.active or user.status != UserStatus.active:
        return None
    return login


def _fresh_login(config: ProviderConfig, force: bool,
                 connection: tuple[str, str] | None) -> Response:
    """Send the browser to sign in (again), then back to this very authorization request;
    remember when, so the login made meanwhile satisfies it (OIDC Core §3.1.2.1)."""
    key = prompt.request_key(request.query_string)
    prompt.remember_ask(session, key, utcnow().timestamp())
    here = f"{config.issuer}/authorize?{request.query_string.decode()}"
    return redirect(prompt.login_url(here, force=force, connection=connection), 303)


def _connection_of(s: Session, login: LoginSession) -> tuple[str, str] | None:
    """(protocol, id) of the enabled connection the login came through, if any."""
    conn = s.get(SsoConnection, login.connection_id) if login.connection_id else None
    return (conn.protocol, conn.id) if conn is not None and conn.enabled else None


@bp.post("/oidc/authorize")
def authorize_post() -> Response:
    """The authorization request by POST (OIDC Core §3.1.2.1: GET and POST MUST be
    supported; form serialization, §13.2): the same request by GET, which the sign-in
    returns to. (A cross-site POST carries no ``SameSite=Lax`` cookie; the GET it is
    redirected to does, so a signed-in browser is recognised.) Query parameters of the
    POST itself are not part of the request."""
    if request.mimetype != "application/x-www-form-urlencoded":
        return pages.refused("The portal's sign-in request is invalid: a POSTed "
                             "authorization request is a form (application/"
                             "x-www-form-urlencoded).", None, 400)
    query = urlencode(list(request.form.items(multi=True)))
    return redirect(f"{base_url()}{PREFIX}/authorize?{query}", 303)


@bp.get("/oidc/authorize")
def authorize() -> Response:
    """Authorization endpoint (RFC 6749 §4.1.1, PKCE required): sign in first, then a code.

    ``prompt`` and ``max_age`` (OIDC Core §3.1.2.1) may ask for a new login first:
    app/sso/provider_prompt.py."""
    try:
        server, config = _server()
    except OAuth2Error as exc:
        return _error(exc)
    prompts = request.args.get("prompt", "").split()
    with _transaction() as s:
        g.roster_oidc_session = s
        login = _browser_login(s)
        if login is None and "none" not in prompts:
            # The request is checked before the employee signs in (OIDC Core §3.1.2.2): an
            # unknown client, a missing nonce or a bad max_age is answered now, not after.
            try:
                grant = server.get_consent_grant(end_user=None)
                prompt.check_prompts(prompts, grant.redirect_uri, request.args.get("state"))
                max_age = prompt.max_age_of(request.args, grant.redirect_uri,
                                            request.args.get("state"))
            except OAuth2Error as exc:
                return _refused(server, exc)
            return _fresh_login(config, prompt.wants_fresh(prompts, max_age), None)
        principal = None if login is None else Principal(
            user=s.get(User, login.user_id), session_id=login.id,
            auth_time=int(login.authenticated.timestamp()))
        try:
            # prompt=none without a login: authlib raises login_required, which goes back
            # to the portal (OIDC Core §3.1.2.6) instead of showing a login page.
            grant = server.get_consent_grant(end_user=principal)
            state = request.args.get("state")
            if login is None:  # authlib raised already; never reached
                raise LoginRequiredError(redirect_uri=grant.redirect_uri, state=state)
            prompt.check_prompts(prompts, grant.redirect_uri, state)
            max_age = prompt.max_age_of(request.args, grant.redirect_uri, state)
            key = prompt.request_key(request.query_string)
            assert principal is not None
            needed = prompt.demand(prompts, max_age, principal.auth_time,
                                   login.created_at.timestamp(), utcnow().timestamp(),
                                   prompt.asked_at(session, key))
            if needed == prompt.STALE:
                prompt.forget_ask(session, key)
                raise LoginRequiredError(
                    redirect_uri=grant.redirect_uri, state=state,
                    description="the identity provider did not authenticate the user again")
            if needed is not None and "none" in prompts:
                raise LoginRequiredError(redirect_uri=grant.redirect_uri, state=state)
            if needed is None:  # the code's user must be the one the hint names
                prompt.check_hint(request.args, config.keys, config.issuer, login.user_id,
                                  grant.redirect_uri, state)
        except OAuth2Error as exc:
            return _refused(server, exc)
        if needed == prompt.LOGIN:
            return _fresh_login(config, True, _connection_of(s, login))
        if needed == prompt.SELECT_ACCOUNT:
            return _fresh_login(config, False, None)
        prompt.forget_ask(session, key)
        return _with_iss(server.create_authorization_response(grant_user=principal,
                                                              grant=grant))


def _with_iss(response: Response) -> Response:
    """Name the issuer in every authorization response to the portal, a code or an error
    (RFC 9207 §2; discovery's ``authorization_response_iss_parameter_supported``)."""
    config = provider_config(current_app._get_current_object())  # type: ignore[attr-defined]
    if config is not None and response.location:
        response.location = add_params_to_uri(response.location, {"iss": config.issuer})
    return response


def _refused(server: AuthorizationServer, exc: OAuth2Error) -> Response:
    """An invalid authorization request: back to the portal's redirect URI with the error,
    or, with no valid redirect URI to report to, shown here (RFC 6749 §4.1.2.1)."""
    if exc.redirect_uri:
        return _with_iss(server.handle_error_response(None, exc))
    return pages.refused(f"The portal's sign-in request is invalid: "
                         f"{exc.description or exc.error}", None, 400)


@contextmanager
def _op_transaction(*, readonly: bool = False) -> Iterator[AuthorizationServer]:
    """The authorization server, with this request's transaction open for its storage."""
    server, _config = _server()
    with _transaction(readonly=readonly) as s:
        g.roster_oidc_session = s
        yield server


def _endpoint(name: str | None, *, readonly: bool = False) -> Response:
    """Run the token endpoint (``None``) or a named authlib endpoint in one transaction
    (``readonly``: one that writes nothing, which on SQLite runs beside a writer)."""
    try:
        with _op_transaction(readonly=readonly) as server:
            if name is None:
                return server.create_token_response()
            return server.create_endpoint_response(name)
    except OAuth2Error as exc:
        # Not configured (503), or raised before authlib's own handling, e.g. plain http
        # (insecure_transport).
        return _error(exc)


@bp.post("/oidc/token")
def token() -> Response:
    """Token endpoint (RFC 6749 §3.2): code (+ PKCE verifier) or refresh token."""
    return _endpoint(None)


@bp.post("/oidc/introspect")
def introspect() -> Response:
    """Token introspection (RFC 7662 §2): a read; nothing is written, a dead token too is
    only answered ``active: false`` (app/sso/provider_tokens.py live_token)."""
    return _endpoint("introspection", readonly=True)


@bp.post("/oidc/revoke")
def revoke() -> Response:
    """Token revocation (RFC 7009 §2)."""
    return _endpoint("revocation")


class _AccessTokens(BearerTokenValidator):
    def authenticate_token(self, token_string: str) -> TokenView | None:
        return live_token(_db(), token_string, ACCESS)


_protect = ResourceProtector()
_protect.register_token_validator(_AccessTokens())


@bp.route("/oidc/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    """UserInfo endpoint (OIDC Core §5.3): claims released by the token's scopes. A read,
    in a read-only transaction: it neither waits for nor holds up a writer (on SQLite the
    single write lock)."""
    with _transaction(readonly=True) as s:
        g.roster_oidc_session = s
        try:
            token = _protect.acquire_token(["openid"])
        except OAuth2Error as exc:
            return _userinfo_refused(exc)
        user = s.get(User, token.row.user_id)
        claims = filter_by_scope(user_claims(s, user), token.get_scope()) if user else {}
        return jsonify({**claims, "sub": token.row.user_id})


def _userinfo_refused(exc: OAuth2Error) -> Response:
    """A bearer challenge (RFC 6750 §3): ``invalid_token`` (401) or ``insufficient_scope``
    (403). A request with no bearer token at all (none, or another scheme) gets a bare
    ``Bearer`` challenge: no error code (§3.1), authlib's ``missing_authorization`` and
    ``unsupported_token_type`` are no RFC 6750 codes."""
    if exc.error in ("missing_authorization", "unsupported_token_type"):
        response = jsonify(error_description="A bearer access token is required "
                                             "(Authorization: Bearer, RFC 6750 section 2.1)")
        response.status_code = 401
        response.headers["WWW-Authenticate"] = "Bearer"
        response.headers["Cache-Control"] = "no-store"
        return response
    response = _error(exc)
    response.status_code = 401 if exc.error != "insufficient_scope" else 403
    response.headers["WWW-Authenticate"] = f'Bearer error="{exc.error}"'
    return response


@bp.route("/oidc/end_session", methods=["GET", "POST"])
def end_session() -> Response:
    """End session endpoint (OIDC RP-Initiated Logout 1.0 §2): revoke the login and its
    tokens, log out at the customer's IdP if it can, then go back to the portal."""
    try:
        with _op_transaction() as server:
            try:
                req = server.validate_endpoint_request("end_session")
            except OAuth2Error as exc:
                # RPIL §4: an invalid request ends nothing and redirects nowhere.
                return pages.refused("The sign-out request is invalid: "
                                     f"{exc.description or exc.error}", None, 400)
            s: Session = g.roster_oidc_session
            login_id = session.get("sso_login_id")
            if (req.needs_confirmation or _hint_is_someone_else(
                    s, login_id, req.id_token_claims)) and not confirmed():
                return confirmation_page("/sso/oidc/end_session")
            ended = end_login_sessions(
                s, browser_login_id=login_id if isinstance(login_id, str) else None,
                hint=req.id_token_claims, actor=actor(),
                client_id=req.client.get_client_id() if req.client else None)
            conn_id = ended.connection_id
            upstream = plan_upstream(
                s, ended, dict(session), sp_urls(conn_id) if conn_id else None, sp_keys(),
                id_tokens=app_sealer(UPSTREAM_ID_TOKEN))
    except OAuth2Error as exc:
        return _error(exc)
    session.clear()
    return _continue_logout(upstream, req.redirect_uri)


def _hint_is_someone_else(s: Session, login_id: object,
                          hint: dict[str, Any] | None) -> bool:
    """The id_token_hint names another user than this browser's login: the user must
    confirm (RPIL §2), or any page could end a browser's session with an old ID token of
    its own (logout CSRF)."""
    if not hint or not isinstance(login_id, str):
        return False
    login = s.get(LoginSession, login_id)
    return login is not None and login.user_id != hint.get("sub")


def _continue_logout(upstream: Upstream | None, final: str | None) -> Response:
    """Send the browser to the IdP's logout, remembering where to go after it; or finish."""
    url = None
    if upstream is not None and upstream.protocol == "saml" and upstream.saml_url:
        session["sso_slo_request"] = upstream.saml_request_id
        url = upstream.saml_url
    elif upstream is not None and upstream.protocol == "oidc":
        try:
            end_session_url = provider_cache().provider(
                upstream.discovery_url or "").end_session_endpoint
        except LoginFailed:
            end_session_url = None  # the IdP is unreachable: our own logout is done anyway
        if end_session_url:
            state = session[LOGOUT_STATE] = secrets.token_urlsafe(24)
            url = oidc_logout_url(end_session_url, upstream,
                                  logged_out_url(base_url(), upstream.connection_id), state)
    if url is not None:
        if final:
            session[LOGOUT_NEXT] = final
        return redirect(url, 303)
    if final:
        return redirect(final, 303)
    return pages.page("Signed out", "<p>You are signed out.</p>")
