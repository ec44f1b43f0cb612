"""Roster as the OpenID Provider facing the portal, on authlib's server components.

Authorization code + PKCE (RFC 6749 §4.1, RFC 7636), ID tokens (OIDC Core §3.1.3.6),
refresh tokens (RFC 6749 §6), introspection (RFC 7662) and revocation (RFC 7009).
Codes and tokens are stored only as SHA-256 hashes. Introspection, revocation and the
discovery document are in app/sso/provider_endpoints.py.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.authenticate_client import authenticate_client_secret_basic
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    UnsupportedResponseTypeError,
)
from authlib.oauth2.rfc6749.models import AuthorizationCodeMixin, ClientMixin
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.errors import RequestNotSupportedError, RequestURINotSupportedError
from authlib.oidc.core.grants import OpenIDCode
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import Actor
from app.db import utcnow
from app.directory.hold import hold_user
from app.models.directory import UserStatus
from app.models.sso import AuthorizationCode, LoginSession
from app.sso.claims import SCOPE_CLAIMS, filter_by_scope, user_claims
from app.sso.connection_sessions import hold_connection
from app.sso.provider_config import ProviderConfig
from app.sso.provider_keys import ALG
from app.sso.provider_prompt import quotable
from app.sso.provider_tokens import (
    REFRESH,
    Principal,
    TokenView,
    claim_code,
    digest,
    live_token,
    replayed_refresh,
    rotate_refresh,
)

SCOPES = ("openid", "email", "profile", "organization", "offline_access")
# Every claim a scope may release (discovery's claims_supported), in SCOPE_CLAIMS order.
SCOPE_CLAIMS_RELEASED = tuple(c for s in SCOPES for c in SCOPE_CLAIMS.get(s, ()) if c != "sub")
# Client authentication at the token, introspection and revocation endpoints.
AUTH_METHODS = ("client_secret_basic", "client_secret_post")


def client_auth_methods(registered: str) -> tuple[str, ...]:
    """The methods the portal may authenticate with: the one it is registered with (RFC 7591
    §2 ``token_endpoint_auth_method``, OIDC Core §9), or either when none is ("")."""
    return (registered,) if registered else AUTH_METHODS


def client_secret_basic(query_client: Callable[[str], Any], request: Any) -> Any:
    """``client_secret_basic`` (RFC 6749 §2.3.1), authlib's, with an Authorization header
    it cannot read (``Basic`` and no credentials, credentials that are not UTF-8) taken as
    no credentials: the client is not authenticated, a 401 ``invalid_client`` (§5.2), where
    authlib's ValueError made a 500."""
    try:
        return authenticate_client_secret_basic(query_client, request)
    except ValueError:  # UnicodeDecodeError too
        return None


class PortalServer(AuthorizationServer):
    """authlib's authorization server, answering a ``response_type`` it does not support
    with ``unsupported_response_type`` (RFC 6749 §4.1.2.1) whatever characters it holds:
    authlib quotes it as sent in the error's description, and refuses to build an error
    whose description holds ``"``, ``\\`` or a non-ASCII character (a ValueError, a 500
    page), so such a value is quoted with those as ``?``. Its ``client_secret_basic`` is
    :func:`client_secret_basic`."""

    def init_app(self, app: Any, *args: Any, **kwargs: Any) -> None:
        """authlib's, then client_secret_basic replaced (it needs the query_client)."""
        super().init_app(app, *args, **kwargs)
        self.register_client_auth_method("client_secret_basic", client_secret_basic)

    def get_authorization_grant(self, request: Any) -> Any:
        """The grant for the request's response type, or unsupported_response_type."""
        asked = request.payload.response_type
        if not isinstance(asked, str) or quotable(asked) == asked:
            return super().get_authorization_grant(request)
        # No grant takes such a type. Where authlib reports it: the client's redirect URI
        # once it is valid for the client (the default one if none was given), else none.
        redirect_uri, client_id = None, request.payload.client_id
        client = self.query_client(client_id) if client_id else None
        if client is not None:
            given = request.payload.redirect_uri
            redirect_uri = (given if client.check_redirect_uri(given) else None) if given \
                else client.get_default_redirect_uri()
        shown = quotable(asked)
        raise UnsupportedResponseTypeError(shown, f"response_type={shown} is not supported",
                                           redirect_uri=redirect_uri)


@dataclass(frozen=True)
class PortalClient(ClientMixin):
    """The portal: one confidential client registered in configuration."""

    client_id: str
    # Out of the repr: authlib logs the client ("Issue token {...} to PortalClient(...)")
    # at DEBUG, and an unsalted digest of an operator-chosen secret can be guessed offline.
    secret_sha256: str = field(repr=False)
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...] = ()
    # token_endpoint_auth_method (RFC 7591 §2); "" takes either of AUTH_METHODS.
    auth_method: str = ""

    @property
    def client_metadata(self) -> dict[str, Any]:
        """Registered metadata authlib reads (post_logout_redirect_uris, OIDC RPIL §3.1)."""
        return {"post_logout_redirect_uris": list(self.post_logout_redirect_uris)}

    def get_client_id(self) -> str:
        """The client id (RFC 6749 §2.2)."""
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        """No default: the portal must name one of its registered URIs."""
        return None

    def get_allowed_scope(self, scope: str) -> str:
        """Requested scopes we know, in request order."""
        return " ".join(s for s in (scope or "").split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact match against the registered URIs (RFC 6749 §3.1.2.3)."""
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        """Compare the presented secret's hash in constant time."""
        return bool(self.secret_sha256) and hmac.compare_digest(
            digest(client_secret or ""), self.secret_sha256.lower())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """The registered method (:func:`client_auth_methods`) at every endpoint that
        authenticates the client: token, introspection and revocation. authlib tries each
        method and takes the first whose credentials are right: without this a portal
        registered with client_secret_basic was taken with the secret in the form (where
        proxies and access logs may keep it) too, and the other way round."""
        return method in client_auth_methods(self.auth_method)

    def check_response_type(self, response_type: str) -> bool:
        """Only the authorization code flow."""
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        """Authorization code and refresh token grants."""
        return grant_type in ("authorization_code", "refresh_token")


class RequiredS256(CodeChallenge):
    """PKCE for every client, confidential ones too, and only S256 (RFC 9700 §2.1.1)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        """Refuse an authorization request without an S256 code_challenge (RFC 7636 §4.3)."""
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("Missing 'code_challenge' (PKCE is required)")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


class CodeView(AuthorizationCodeMixin):
    """An authorization code row as authlib expects it."""

    def __init__(self, row: AuthorizationCode) -> None:
        self.row = row
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str:
        """The redirect URI the code was issued for."""
        return self.row.redirect_uri

    def get_scope(self) -> str:
        """Granted scope."""
        return self.row.scope

    def get_nonce(self) -> str | None:
        """The nonce of the authorization request (OIDC Core §3.1.2.1)."""
        return self.row.nonce

    def get_auth_time(self) -> int:
        """When the user authenticated."""
        return int(self.row.auth_time.timestamp())

    def get_acr(self) -> None:
        """No ACR values."""
        return None

    def get_amr(self) -> None:
        """No AMR values."""
        return None


def _unstorable(data: Mapping[str, Any]) -> str | None:
    """The portal's nonce and scope are kept with the code: longer than their columns, they
    are invalid_request (RFC 6749 §4.1.2.1), not a failed write on PostgreSQL. (NUL never
    gets here: the /sso blueprint refuses it in any parameter, app/sso/views.py.)"""
    for name, column in (("nonce", AuthorizationCode.nonce), ("scope", AuthorizationCode.scope)):
        value = data.get(name)
        if isinstance(value, str) and len(value) > column.type.length:
            return f"{name} is longer than {column.type.length} characters"
    return None


def _unsupported(data: Mapping[str, Any], redirect_uri: str, state: str | None) -> None:
    """Refuse what discovery says Roster does not do, instead of ignoring it: a Request
    Object by value or by reference (OIDC Core §6, §3.1.2.6: ``request_not_supported``,
    ``request_uri_not_supported``; discovery's ``request_uri_parameter_supported`` is
    ``false``, its default being true) and any ``response_mode`` but ``query`` (OAuth 2.0
    Multiple Response Type Encoding Practices §2.1; ``response_modes_supported``). The
    redirect URI is valid by now: the portal hears of it there (RFC 6749 §4.1.2.1)."""
    if "request" in data:
        raise RequestNotSupportedError(redirect_uri=redirect_uri, state=state)
    if "request_uri" in data:
        raise RequestURINotSupportedError(redirect_uri=redirect_uri, state=state)
    if data.get("response_mode", "query") != "query":
        raise InvalidRequestError("response_mode must be query", redirect_uri=redirect_uri,
                                  state=state)


def build_grants(db: Any, config: ProviderConfig,
                 who: Callable[[], Actor]) -> tuple[type, type, OpenIDCode]:
    """Grant classes bound to this deployment's storage; ``db()`` is the request's session,
    ``who()`` the caller as the audit log names it (a replayed code or token is audited)."""

    class CodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

        def validate_authorization_request(self) -> str:
            redirect_uri: str = super().validate_authorization_request()
            _unsupported(self.request.payload.data, redirect_uri, self.request.payload.state)
            problem = _unstorable(self.request.payload.data)
            if problem:  # the redirect URI is valid: the portal hears of it there
                raise InvalidRequestError(problem, redirect_uri=redirect_uri,
                                          state=self.request.payload.state)
            return redirect_uri

        def save_authorization_code(self, code: str, request: Any) -> None:
            data, principal = request.payload.data, request.user
            db().add(AuthorizationCode(
                code_hash=digest(code), client_id=request.client.get_client_id(),
                user_id=principal.user.id, session_id=principal.session_id,
                redirect_uri=request.payload.redirect_uri, scope=request.scope or "",
                nonce=data.get("nonce"), code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                auth_time=datetime.fromtimestamp(principal.auth_time, tz=utcnow().tzinfo),
                expires_at=utcnow() + timedelta(seconds=config.code_seconds)))

        def query_authorization_code(self, code: str, client: Any) -> CodeView | None:
            row = db().get(AuthorizationCode, digest(code))
            if row is None or row.client_id != client.get_client_id() \
                    or row.expires_at <= utcnow():
                return None
            # Used from here on, even if a later check fails (a wrong PKCE verifier burns
            # the code); a second use is refused and revokes the first one's tokens.
            if not claim_code(db(), row, who()):
                return None
            return CodeView(row)

        def delete_authorization_code(self, authorization_code: CodeView) -> None:
            """Nothing to do: the row stays, marked used, until it expires (purge)."""

        def authenticate_user(self, authorization_code: CodeView) -> Principal | None:
            return _principal(db(), authorization_code.row.user_id,
                              authorization_code.row.session_id,
                              authorization_code.get_auth_time())

    class RefreshGrant(grants.RefreshTokenGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)
        INCLUDE_NEW_REFRESH_TOKEN = True

        def authenticate_refresh_token(self, refresh_token: str) -> TokenView | None:
            token = live_token(db(), refresh_token, REFRESH)
            if token is not None and token.row.rotated_at is not None:
                replayed_refresh(db(), token.row, who())  # RFC 9700 §4.14.2
                return None
            if token is None or token.is_revoked() or token.is_expired():
                return None
            return token

        def authenticate_user(self, refresh_token: TokenView) -> Principal | None:
            row = refresh_token.row
            principal = _principal(db(), row.user_id or "", row.session_id or "",
                                   int(row.issued_at.timestamp()))
            if principal is None:
                # A user or login gone since the token was read (a deprovisioning that
                # committed while this waited for the user's row): the token is revoked,
                # invalid_grant (RFC 6749 §5.2), not authlib's invalid_request.
                raise InvalidGrantError("The refresh token was revoked.")
            return principal

        def revoke_old_credential(self, refresh_token: TokenView) -> None:
            if not rotate_refresh(db(), refresh_token, who()):
                # A concurrent request rotated it first: a replay; the family is revoked.
                raise InvalidGrantError("The refresh token was already used.")

    class RosterOpenIDCode(OpenIDCode):
        def exists_nonce(self, nonce: str, request: Any) -> bool:
            return db().scalar(select(AuthorizationCode.code_hash).where(
                AuthorizationCode.nonce == nonce,
                AuthorizationCode.client_id == request.payload.client_id)) is not None

        def resolve_client_private_key(self, client: Any) -> Any:
            return config.keys.signing

        def get_client_algorithm(self, client: Any) -> str:
            return ALG

        def get_encode_header(self, client: Any) -> dict[str, str]:
            return {"alg": ALG, "kid": config.keys.kid, "typ": "JWT"}

        def get_client_claims(self, client: Any) -> dict[str, Any]:
            return {"iss": config.issuer, "aud": [client.get_client_id()],
                    "exp": int(time.time()) + config.id_token_seconds}

        def generate_user_info(self, user: Principal, scope: str) -> UserInfo:
            claims = filter_by_scope(user_claims(db(), user.user), scope)
            return UserInfo(sid=user.session_id, **claims)

    return CodeGrant, RefreshGrant, RosterOpenIDCode(require_nonce=True)


def _principal(session: Session, user_id: str, session_id: str,
               auth_time: int) -> Principal | None:
    """The user behind a code or refresh token, only while user, session and the session's
    connection are live.

    The user's row is held until the tokens are issued and committed (app/directory/hold.py):
    a refresh that read the user active and committed after a deprovisioning's revocation
    had begun left its new tokens live (PostgreSQL). The login's connection is held so too
    (:func:`_held_login`), first: a login takes the connection and then the user
    (app/sso/login.py), and every transaction takes its locks in that one order
    (DESIGN.md)."""
    login = _held_login(session, session_id)
    if login is None or login.revoked_at is not None or (
            login.expires_at is not None and login.expires_at <= utcnow()):
        return None
    user = hold_user(session, user_id)
    if user is None or not user.active or user.status != UserStatus.active:
        return None
    return Principal(user=user, session_id=session_id, auth_time=auth_time)


def _held_login(session: Session, session_id: str) -> LoginSession | None:
    """The login session, None when it or the connection it came through is gone or that
    connection is disabled; the connection's row held until the new tokens commit, as a
    login holds it (app/sso/connection_sessions.py).

    A disable (or delete) revokes the connection's sessions and their tokens by UPDATEs that
    cannot see tokens this exchange inserted and has not committed (PostgreSQL): an
    exchange that read the login live and committed after them left token rows unrevoked
    (refused on use, yet missing from the disable's ``tokens_revoked``). Held, a disable in
    flight makes this exchange wait and then refuse, and a later one waits for this commit
    and then revokes what it issued (RFC 7009 §2.1 in spirit). The login is read again
    under the hold: as committed then, not as first read. SQLite has one writer: an
    exchange and a disable never overlap."""
    login = session.get(LoginSession, session_id)
    if login is None or login.connection_id is None:
        return login
    conn = hold_connection(session, login.connection_id)
    if conn is None or not conn.enabled:
        return None
    if session.get_bind().dialect.name == "postgresql":
        return session.get(LoginSession, session_id, populate_existing=True)
    return login
