"""The portal as an OIDC client of Roster: authorize with PKCE, exchange, verify tokens."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.sso import forge
from tests.sso.conftest import (
    PORTAL_CALLBACK,
    PORTAL_CLIENT,
    PORTAL_SECRET,
    claims_for,
    post_response,
    provision,
    saml_connection,
    start,
)

ISSUER = "http://roster.test/sso/oidc"
BASIC = "Basic " + base64.b64encode(f"{PORTAL_CLIENT}:{PORTAL_SECRET}".encode()).decode()


@dataclass
class AuthRequest:
    """One authorization request's secrets, as the portal keeps them."""

    state: str
    nonce: str
    verifier: str

    @classmethod
    def new(cls) -> AuthRequest:
        """Fresh state, nonce and PKCE verifier."""
        return cls(secrets.token_urlsafe(16), secrets.token_urlsafe(16),
                   secrets.token_urlsafe(48))

    def url(self, scope: str = "openid email profile organization offline_access",
            **extra: str) -> str:
        """The authorize URL with an S256 challenge (RFC 7636 §4.3)."""
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(self.verifier.encode()).digest()).rstrip(b"=").decode()
        params = {"response_type": "code", "client_id": PORTAL_CLIENT,
                  "redirect_uri": PORTAL_CALLBACK, "scope": scope, "state": self.state,
                  "nonce": self.nonce, "code_challenge": challenge,
                  "code_challenge_method": "S256", **extra}
        return f"{ISSUER}/authorize?{urlencode({k: v for k, v in params.items() if v})}"


def code_from(location: str, state: str) -> str:
    """The code of a redirect to the portal's callback, after checking state."""
    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == PORTAL_CALLBACK, location
    query = parse_qs(parts.query)
    assert query["state"] == [state], query
    return query["code"][0]


def exchange(web: FlaskClient, code: str, verifier: str | None) -> Any:
    """POST the code (and verifier) to the token endpoint with client_secret_basic."""
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": PORTAL_CALLBACK}
    if verifier is not None:
        data["code_verifier"] = verifier
    return web.post("/sso/oidc/token", data=data, headers={"Authorization": BASIC})


def verify_id_token(web: FlaskClient, id_token: str, nonce: str) -> dict[str, Any]:
    """Check the ID token against the published JWKS, issuer, audience and nonce."""
    keys = KeySet.import_key_set(web.get("/sso/oidc/jwks").get_json())
    token = jwt.decode(id_token, keys, algorithms=["RS256"])
    claims = token.claims
    assert claims["iss"] == ISSUER
    assert claims["aud"] in (PORTAL_CLIENT, [PORTAL_CLIENT])
    assert claims["nonce"] == nonce
    return {"header": token.header, **claims}


def introspect(web: FlaskClient, token: str) -> dict[str, Any]:
    """RFC 7662 introspection as the portal."""
    return web.post("/sso/oidc/introspect", data={"token": token},
                    headers={"Authorization": BASIC}).get_json()


def signed_in(db, tenant, keys, web, next_url: str):
    """SAML login whose RelayState is ``next_url``; returns (user, response)."""
    user = provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    request_id = start(web, conn, next_url)
    xml = forge.signed_response(claims_for(conn, in_response_to=request_id), keys.idp)
    return user, post_response(web, conn, forge.b64(xml))


def login_and_code(db, tenant, keys, web) -> tuple[object, AuthRequest, str]:
    """The full portal journey up to the code: authorize -> SAML login -> authorize -> code."""
    req = AuthRequest.new()
    first = web.get(req.url().replace("http://roster.test", ""))
    assert first.status_code == 303
    assert first.headers["Location"].startswith("/sso/login?next=")
    user, resp = signed_in(db, tenant, keys, web, req.url())
    assert resp.headers["Location"] == req.url()
    back = web.get(req.url().replace("http://roster.test", ""))
    assert back.status_code == 302, back.text
    return user, req, code_from(back.headers["Location"], req.state)
