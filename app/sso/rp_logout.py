"""OpenID Connect RP-Initiated Logout 1.0, both ways.

As the portal's OP: authlib's ``EndSessionEndpoint`` validates ``id_token_hint`` (signed by
our key), ``client_id`` against its ``aud`` and ``post_logout_redirect_uri`` against the
portal's registered URIs (exact match, §3); :func:`end_login_sessions` then revokes the
login through the same path as every other revocation (tokens, ``session.revoked`` for
back-channel logout, audit). Toward the customer's IdP: :func:`plan_upstream` says where the
browser goes next, the IdP's ``end_session_endpoint`` (OIDC) or its SingleLogoutService (SAML).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oidc.rpinitiated import EndSessionEndpoint
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.models.sso import LoginSession, SsoConnection
from app.sso.keys import SpKeys
from app.sso.outcome import LoginFailed
from app.sso.provider_config import ProviderConfig
from app.sso.provider_keys import ALG
from app.sso.saml import SpUrls
from app.sso.sealed import Sealer
from app.sso.slo import SamlSubject, revoke_login_session, start_logout

# Keys of the browser's signed cookie.
# {"connection": id}; the IdP's ID token is sealed in login_sessions.upstream_id_token (a
# cookie from before migration 0027 may still carry it as "id_token").
UPSTREAM_OIDC = "sso_oidc"
UPSTREAM_SAML = "sso_saml"  # {"connection": id, "name_id", "format", "session_index"}
LOGOUT_NEXT = "sso_logout_next"  # where to go once the IdP has logged out too
LOGOUT_STATE = "sso_logout_state"  # the state sent to the IdP's end_session_endpoint
REASON = "oidc_rp_logout"


def end_session_endpoint(config: ProviderConfig) -> EndSessionEndpoint:
    """authlib's end_session endpoint bound to our keys and issuer (RPIL §2)."""

    class RosterEndSession(EndSessionEndpoint):
        def get_server_jwks(self) -> dict[str, Any]:
            return config.keys.jwks()

        def get_algorithms(self) -> list[str]:
            return [ALG]

        def _validate_id_token_hint(self, id_token_hint: str) -> dict[str, Any]:
            try:
                claims = super()._validate_id_token_hint(id_token_hint)
            except (TypeError, ValueError, RecursionError):
                # joserfc raises a TypeError on a header whose ``crit`` is a number or
                # holds one (RFC 7515 §4.1.11), before any signature is checked: any page
                # made a 500 of the logout. A hint that is no JWS of ours is invalid (§4).
                raise InvalidRequestError("id_token_hint is not a valid JWS") from None
            if claims.get("iss") != config.issuer:
                raise InvalidRequestError("id_token_hint was not issued by this provider")
            return claims

        def resolve_client_from_id_token_claims(self, id_token_claims: dict[str, Any]) -> Any:
            # Our ID tokens carry aud as a one-element list (OIDC Core §2 allows both).
            aud = id_token_claims.get("aud")
            if isinstance(aud, list) and len(aud) == 1 and isinstance(aud[0], str):
                return self.server.query_client(aud[0])
            return super().resolve_client_from_id_token_claims(id_token_claims)

        def end_session(self, end_session_request: Any) -> None:
            """Unused: the view ends the session itself, inside its transaction."""

    return RosterEndSession()


@dataclass(frozen=True)
class EndedLogin:
    """The login a logout request ended, enough to continue at the IdP."""

    connection_id: str | None
    sessions: tuple[str, ...]
    # The IdP's ID token of the browser's login, still sealed: taken out of its row, which
    # keeps none once ended (the hint of one logout at the IdP, used once).
    sealed_id_token: str | None = None


def end_login_sessions(session: Session, *, browser_login_id: str | None,
                       hint: dict[str, Any] | None, client_id: str | None,
                       actor: Actor) -> EndedLogin:
    """Revoke the browser's login and the one the id_token_hint names (its ``sid``, when it
    belongs to the hint's ``sub``); audit ``sso:logout``. RPIL §2."""
    browser = session.get(LoginSession, browser_login_id) if browser_login_id else None
    hinted = None
    if hint and isinstance(hint.get("sid"), str) and len(hint["sid"]) <= 36:
        row = session.get(LoginSession, hint["sid"])
        if row is not None and row.user_id == hint.get("sub"):
            hinted = row
    rows = list(dict.fromkeys(r for r in (browser, hinted) if r is not None))
    sealed = browser.upstream_id_token if browser is not None else None
    ended = tuple(r.id for r in rows if revoke_login_session(session, r.id, actor, REASON))
    primary = browser or hinted
    if primary is None:
        return EndedLogin(None, ())
    record(session, organization_id=primary.organization_id, action="sso:logout",
           actor=actor, subject_type="user", subject_id=primary.user_id,
           data={"client_id": client_id, "sessions_ended": list(ended),
                 "id_token_hint": hint is not None, "connection_id": primary.connection_id})
    return EndedLogin(primary.connection_id, ended, sealed)


@dataclass(frozen=True)
class Upstream:
    """How to log the browser out at the customer's IdP too."""

    protocol: str
    connection_id: str
    # SAML: the signed LogoutRequest redirect, and its id (to match the LogoutResponse).
    saml_url: str | None = None
    saml_request_id: str | None = None
    # OIDC: where to read the IdP's end_session_endpoint, and the hint to send it.
    discovery_url: str | None = None
    client_id: str | None = None
    id_token: str | None = None


def plan_upstream(session: Session, ended: EndedLogin, cookie: dict[str, Any],
                  urls: SpUrls | None, keys: SpKeys, *,
                  id_tokens: Sealer | None = None) -> Upstream | None:
    """The IdP logout for the login the browser held, when its IdP supports one, with the
    IdP's ID token of that login (the hint) that :func:`end_login_sessions` took out."""
    connection_id = ended.connection_id
    conn = session.get(SsoConnection, connection_id) if connection_id else None
    if conn is None or not conn.enabled:
        return None
    if conn.protocol == "saml":
        saml = cookie.get(UPSTREAM_SAML) or {}
        if saml.get("connection") != conn.id or not conn.idp_slo_url or urls is None:
            return None
        subject = SamlSubject(saml.get("name_id", ""), saml.get("format"),
                              saml.get("session_index"))
        try:
            url, request_id = start_logout(conn, urls, keys, subject)
        except LoginFailed:
            return None
        return Upstream("saml", conn.id, saml_url=url, saml_request_id=request_id)
    oidc = cookie.get(UPSTREAM_OIDC) or {}
    if oidc.get("connection") != conn.id or not conn.oidc_discovery_url:
        return None
    return Upstream("oidc", conn.id, discovery_url=conn.oidc_discovery_url,
                    client_id=conn.oidc_client_id,
                    id_token=(id_tokens.open(ended.sealed_id_token) if id_tokens else None)
                    or oidc.get("id_token"))


def oidc_logout_url(end_session_url: str, upstream: Upstream, post_logout_redirect_uri: str,
                    state: str) -> str:
    """The IdP's end_session_endpoint with id_token_hint, client_id, the URI back to
    Roster and a state (RPIL §2)."""
    params = {"post_logout_redirect_uri": post_logout_redirect_uri, "state": state}
    if upstream.id_token:
        params["id_token_hint"] = upstream.id_token
    if upstream.client_id:
        params["client_id"] = upstream.client_id
    separator = "&" if "?" in end_session_url else "?"
    return f"{end_session_url}{separator}{urlencode(params)}"
