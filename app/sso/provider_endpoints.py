"""The OpenID Provider's introspection (RFC 7662) and revocation (RFC 7009) endpoints and
its discovery document (OIDC Discovery 1.0 §3), on the client and scopes of
app/sso/provider.py."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from app.db import utcnow
from app.sso.provider import AUTH_METHODS, SCOPE_CLAIMS_RELEASED, SCOPES, client_auth_methods
from app.sso.provider_config import ProviderConfig
from app.sso.provider_keys import ALG
from app.sso.provider_prompt import PROMPT_VALUES
from app.sso.provider_tokens import ACCESS, REFRESH, TokenView, live_token, revoke_family


def _hint(hint: str | None) -> str | None:
    return {"access_token": ACCESS, "refresh_token": REFRESH}.get(hint or "")


def _check_params(request: Any, client: Any) -> None:
    """A request names its ``token`` (else ``invalid_request``); its ``token_type_hint`` is
    only a hint, whatever it says (RFC 7662 §2.1, RFC 7009 §2.1: a server that cannot find
    the token by the hint MUST search every type it supports, and MAY ignore the hint).
    authlib answered a hint it does not know (``id_token``, a typo) ``unsupported_token_type``
    with status 401, which tells the portal its own credentials were refused; that error is
    for a token type the server cannot revoke (RFC 7009 §2.2.1), and both of ours it can."""
    if "token" not in request.form:
        raise InvalidRequestError()


def build_endpoints(db: Any, config: ProviderConfig) -> tuple[type, type]:
    """Introspection (RFC 7662) and revocation (RFC 7009) bound to our storage."""

    class Introspection(IntrospectionEndpoint):
        CLIENT_AUTH_METHODS = list(AUTH_METHODS)

        def check_params(self, request: Any, client: Any) -> None:
            _check_params(request, client)

        def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
            return live_token(db(), token_string, _hint(token_type_hint)) or live_token(
                db(), token_string, None)

        def check_permission(self, token: TokenView, client: Any, request: Any) -> bool:
            return token.check_client(client)

        def introspect_token(self, token: TokenView) -> dict[str, Any]:
            row = token.row
            return {"active": True, "client_id": row.client_id, "scope": row.scope,
                    "token_type": "Bearer" if row.token_type == ACCESS else "refresh_token",
                    "sub": row.user_id, "sid": row.session_id, "org_id": row.organization_id,
                    "iss": config.issuer, "aud": row.client_id,
                    "iat": int(row.issued_at.timestamp()),
                    "exp": int(row.expires_at.timestamp()) if row.expires_at else None}

    class Revocation(RevocationEndpoint):
        CLIENT_AUTH_METHODS = list(AUTH_METHODS)

        def check_params(self, request: Any, client: Any) -> None:
            _check_params(request, client)

        def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
            return live_token(db(), token_string, _hint(token_type_hint)) or live_token(
                db(), token_string, None)

        def revoke_token(self, token: TokenView, request: Any) -> None:
            row, now = token.row, utcnow()
            row.revoked_at = row.revoked_at or now
            if row.token_type == REFRESH:
                # RFC 7009 §2.1: revoking a refresh token also drops the access tokens
                # "based on the same authorization grant": its family, not the client's
                # other grants on the same login session (another tab's, say).
                revoke_family(db(), row.family_id, row.session_id, row.client_id, now)

    return Introspection, Revocation


def discovery_document(config: ProviderConfig) -> dict[str, Any]:
    """OpenID Provider metadata (OIDC Discovery 1.0 §3, RFC 8414 §2): only what works, and
    explicit where an omitted member's default would claim more."""
    iss = config.issuer
    return {
        "issuer": iss, "authorization_endpoint": f"{iss}/authorize",
        "token_endpoint": f"{iss}/token", "userinfo_endpoint": f"{iss}/userinfo",
        "jwks_uri": f"{iss}/jwks", "introspection_endpoint": f"{iss}/introspect",
        "revocation_endpoint": f"{iss}/revoke", "response_types_supported": ["code"],
        # Omitted, these would default to ["query", "fragment"] and true (Discovery §3).
        "response_modes_supported": ["query"], "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "authorization_response_iss_parameter_supported": True,
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": [ALG],
        "scopes_supported": list(SCOPES), "code_challenge_methods_supported": ["S256"],
        # RFC 8414 §2: omitted, revocation and introspection would be client_secret_basic
        # only; client_secret_post works there too. The one client's registered method
        # only, when it has one: a portal choosing from this list must not pick the other.
        **{f"{e}_endpoint_auth_methods_supported": list(client_auth_methods(config.auth_method))
           for e in ("token", "revocation", "introspection")},
        "claims_supported": ["sub", "sid", "auth_time", *SCOPE_CLAIMS_RELEASED],
        "prompt_values_supported": list(PROMPT_VALUES),
        "backchannel_logout_supported": True, "backchannel_logout_session_supported": True,
        "end_session_endpoint": f"{iss}/end_session",
    }
