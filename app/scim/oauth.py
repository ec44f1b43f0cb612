"""``POST /oauth/token``: OAuth 2.0 client credentials for IdPs (RFC 6749 §4.4, §5).

authlib's AuthorizationServer and ClientCredentialsGrant do the protocol (client
authentication, grant validation, the RFC 6749 §5.1 / §5.2 JSON); this module only binds
them to Roster's storage in app/directory/oauth_clients.py. Entra's gallery apps ask for
a token endpoint, a client id and a secret, and expect tokens living 60-360 minutes.

A client has one scope, ``scim`` (RFC 6749 §3.3): the default when the request names
none, said in every token response (§5.1), and a request for any other scope, or a scope
string outside §3.3's grammar, is ``invalid_scope`` (§5.2), judged after the client has
authenticated.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc6749.errors import InvalidScopeError
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from sqlalchemy.exc import DBAPIError

from app.api.ratelimit import request_limit
from app.db import Database
from app.db_errors import describe_transient, is_transient
from app.directory.oauth_clients import (
    ACCESS_TOKEN_PREFIX,
    SCIM_SCOPE,
    check_secret,
    find_client,
    store_access_token,
)
from app.migrate import NOT_READY_RETRY_AFTER, schema_not_ready
from app.models.scim_ops import OAuthClient
from app.scim.client_limit import count_token_request

bp = Blueprint("oauth", __name__, url_prefix="/oauth")
log = logging.getLogger(__name__)
_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
# RFC 6749 §3.3: scope = scope-token *( SP scope-token ),
# scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*\Z")


def scope_problem(scope: str | None) -> str | None:
    """Why a requested scope is ``invalid_scope`` (RFC 6749 §5.2), if it is: malformed
    (§3.3's grammar) or naming a scope other than ``scim``. None and "" ask for nothing
    (§3.2: a parameter without a value is omitted) and get the default."""
    if not scope:
        return None
    if not _SCOPE.match(scope):
        return ("the scope is malformed: scope tokens of printable ASCII other than double "
                "quote and backslash, separated by single spaces (RFC 6749 section 3.3); "
                f"this client's scope is {SCIM_SCOPE}, or omit the parameter")
    unknown = " ".join(sorted(set(scope.split(" ")) - {SCIM_SCOPE}))
    if unknown:
        # The tokens passed the grammar, so they may stand in error_description (5.2).
        shown = unknown if len(unknown) <= 100 else unknown[:100] + "..."
        return (f"this client has only the scope {SCIM_SCOPE} (its directory's SCIM API), "
                f"not {shown}: ask for {SCIM_SCOPE} or omit the scope parameter")
    return None


def _quotable(value: str, limit: int | None = 100) -> str:
    """``value`` as an ``error_description`` may quote it (RFC 6749 §5.2: %x20-21 /
    %x23-5B / %x5D-7E), any other character as ``?``, at most ``limit`` of them."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in value[:limit])


# Failed client authentication, said in words (authlib's description is a Python list of
# method names); what failed, never which part (RFC 6749 §5.2).
_CLIENT_REFUSED = ("client authentication failed: unknown client or wrong secret (send them "
                   "as HTTP Basic or as the form's client_id and client_secret, RFC 6749 "
                   "section 2.3.1)")


def _client_refused(response: Response) -> None:
    """Make authlib's 401 ``invalid_client`` say :data:`_CLIENT_REFUSED` in the body and in
    its ``WWW-Authenticate`` challenge alike (RFC 6749 §5.2: the challenge matches the
    client's scheme, Basic; RFC 6750 §3 carries ``error`` and ``error_description`` as
    auth-params), the realm named as RFC 7617 §2 asks. The description is quotable as it
    is; :func:`_quotable` keeps any later wording so (no ``"`` or ``\\`` to escape)."""
    said = _quotable(_CLIENT_REFUSED, None)
    response.set_data(json.dumps({"error": "invalid_client", "error_description": said}))
    response.headers["WWW-Authenticate"] = (
        f'Basic realm="roster-oauth", error="invalid_client", error_description="{said}"')


class _Server(AuthorizationServer):
    """authlib's server, judging the requested scope as Roster's clients have it."""

    def validate_requested_scope(self, scope: str | None) -> None:
        """``invalid_scope`` for a malformed or unknown scope (RFC 6749 §3.3, §5.2); authlib
        checked nothing without a ``scopes_supported`` list and issued the token anyway,
        without saying that its scope differed from the one requested."""
        if (problem := scope_problem(scope)) is not None:
            raise InvalidScopeError(description=problem)


class _Client(ClientMixin):
    """authlib's view of a directory's OAuth client."""

    def __init__(self, row: OAuthClient) -> None:
        self.row = row

    def get_client_id(self) -> str:
        """The public client id."""
        return self.row.client_id

    def get_default_redirect_uri(self) -> str | None:
        """No redirects: client credentials only."""
        return None

    def get_allowed_scope(self, scope: str) -> str:
        """``scim``, whatever was asked (the request's scope is already judged): a token
        acts for its whole directory."""
        return SCIM_SCOPE

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """No redirect URIs are registered."""
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        """Constant-time comparison against the stored hash."""
        return check_secret(self.row, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """HTTP Basic or form fields (RFC 6749 §2.3.1), only at the token endpoint."""
        return endpoint == "token" and method in _AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        """No authorization endpoint."""
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        """Only client_credentials."""
        return grant_type == "client_credentials"


class _ClientCredentials(grants.ClientCredentialsGrant):
    """RFC 6749 §4.4, accepting the secret in the Basic header or in the form."""

    TOKEN_ENDPOINT_AUTH_METHODS = _AUTH_METHODS


def _query_client(client_id: str) -> _Client | None:
    row = find_client(g.oauth_session, client_id)
    return _Client(row) if row is not None else None


def _authenticate(client_id: str | None, client_secret: str | None) -> _Client | None:
    """The client whose id and secret these are, else None: an unknown (or revoked) client
    id and a wrong secret then end alike, in authlib's 401 ``invalid_client``. Its own
    methods answered an unknown id with a 400 "does not exist on this server", which let
    anyone probe which client ids exist (RFC 6749 §5.2 asks 401 for failed client
    authentication)."""
    if not client_id or not client_secret:
        return None
    client = _query_client(client_id)
    return client if client is not None and client.check_client_secret(client_secret) else None


def _secret_basic(_query_client: Any, request: Any) -> _Client | None:
    """``client_secret_basic`` (RFC 6749 §2.3.1): the HTTP Basic header."""
    try:
        client_id, client_secret = extract_basic_authorization(request.headers)
    except UnicodeDecodeError:
        # Credentials that are not UTF-8 (RFC 7617 §2.1) name no client; authlib let the
        # decoding error out, a 500.
        return None
    return _authenticate(client_id, client_secret)


def _secret_post(_query_client: Any, request: Any) -> _Client | None:
    """``client_secret_post`` (RFC 6749 §2.3.1): the form fields."""
    return _authenticate(request.form.get("client_id"), request.form.get("client_secret"))


def _save_token(token: dict[str, Any], request: Any) -> None:
    store_access_token(g.oauth_session, request.client.row, token["access_token"],
                       int(token["expires_in"]), token["scope"])


def _new_access_token(**_: Any) -> str:
    return ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)


def init_oauth(app: Flask) -> None:
    """Build the authorization server for ``app`` and register the /oauth blueprint."""
    lifetime = app.config["ROSTER"]["oauth"]["access_token_minutes"] * 60
    server = _Server()
    server.init_app(app, query_client=_query_client, save_token=_save_token)
    server.register_token_generator(
        "default", BearerTokenGenerator(_new_access_token, None, lambda _c, _g: lifetime))
    server.register_grant(_ClientCredentials)
    server.register_client_auth_method("client_secret_basic", _secret_basic)
    server.register_client_auth_method("client_secret_post", _secret_post)
    app.extensions["roster.oauth"] = server
    app.register_blueprint(bp)


@bp.errorhandler(DBAPIError)
def _database_error(exc: DBAPIError) -> Response:
    """A database that is away, busy or not upgraded yet: 503 ``temporarily_unavailable``
    (RFC 6749 §5.2 names no such error for the token endpoint, but §4.1.2.1 defines it, and
    Entra retries a 503) with ``Retry-After``, as SCIM answers; any other error stays a 500."""
    if is_transient(exc):
        log.warning("token request hit a transient database error: %s",
                    describe_transient(exc))
        retry = "1"
    elif schema_not_ready(current_app.extensions["roster.db"].engine, exc):
        retry = NOT_READY_RETRY_AFTER
    else:
        raise exc
    response = jsonify(error="temporarily_unavailable",
                       error_description="the service is busy; retry the request")
    response.status_code = 503
    response.headers.update({"Retry-After": retry, "Cache-Control": "no-store"})
    return response


def _malformed() -> str | None:
    """Why this token request is ``invalid_request`` (RFC 6749 §5.2), if it is: a parameter
    given more than once (§3.2: "MUST NOT be included more than once"; authlib took the
    first value and ignored the others), two client authentication methods at once, or no
    grant_type (§4.4.2 requires it, and §3.2
    treats a parameter without a value as omitted; authlib said unsupported_grant_type)."""
    values = request.values  # authlib reads the form and the query string alike
    for name in values:
        if len(values.getlist(name)) > 1:
            return (f"the parameter {_quotable(name)} is given more than once "
                    "(RFC 6749 section 3.2)")
    if request.headers.get("Authorization") and "client_secret" in request.form:
        # §2.3: "MUST NOT use more than one authentication method in each request"; §5.2
        # names it invalid_request. authlib tried Basic, then the form: a wrong Basic header
        # beside a right form secret was issued a token.
        return ("the client authenticates twice (an Authorization header and a "
                "client_secret parameter): use one method (RFC 6749 section 2.3)")
    if not values.get("grant_type"):
        return ("the grant_type parameter is missing: send grant_type=client_credentials "
                "in an application/x-www-form-urlencoded body (RFC 6749 section 4.4.2)")
    return None


def _over_quota(db: Database) -> int | None:
    """The seconds to wait when the client's token requests are over its limit (as many as
    ``ratelimit.scim`` allows a SCIM credential; each issued token is a row written), else
    None. Checked in a short read before the token's write transaction, which
    authenticates again; credentials that do not authenticate are left to it (401)."""
    if request_limit("scim") is None:
        return None
    with db.transaction(readonly=True) as session:
        g.oauth_session = session
        client = (_secret_basic(None, request) if request.headers.get("Authorization")
                  else _secret_post(None, request))
    return None if client is None else count_token_request(client.row.client_id)


@bp.post("/token")
def token() -> Response:
    """Issue an access token for a directory's client credentials (RFC 6749 §4.4.2)."""
    server: AuthorizationServer = current_app.extensions["roster.oauth"]
    db: Database = current_app.extensions["roster.db"]
    if (problem := _malformed()) is not None:
        response = jsonify(error="invalid_request", error_description=problem)
        response.status_code = 400
    elif (retry_after := _over_quota(db)) is not None:
        # RFC 6749 names no error for this; temporarily_unavailable (§4.1.2.1) is what the
        # endpoint answers a busy database and a blocked address with (RFC 6585 §4).
        response = jsonify(error="temporarily_unavailable", error_description=(
            f"the client's limit of {request_limit('scim')} token requests is spent; "
            f"retry in {retry_after} s"))
        response.status_code = 429
        response.headers["Retry-After"] = str(retry_after)
    else:
        with db.transaction() as session:
            g.oauth_session = session
            response = server.create_token_response()
        if response.status_code == 401:
            _client_refused(response)
    # RFC 6749 §5.1: token responses must not be cached.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    return response
