"""The portal authenticates with the method it is registered with
(``oidc_provider.portal_token_endpoint_auth_method``; RFC 7591 §2
``token_endpoint_auth_method``, OIDC Core §9): pinned, the other method is 401
``invalid_client`` at the token, introspection and revocation endpoints alike, and discovery
names only the pinned one. Unset, either is taken (as before the setting)."""

from __future__ import annotations

import pytest
from flask import Flask

from app import create_app
from app.settings import SettingsError
from tests.sso.conftest import PORTAL_CALLBACK, PORTAL_CLIENT, PORTAL_SECRET, sso_overrides
from tests.sso.portal import BASIC, login_and_code

POST = {"client_id": PORTAL_CLIENT, "client_secret": PORTAL_SECRET}
METHODS = ("client_secret_basic", "client_secret_post")


def _pinned_app(database_url, keys, db, method: str) -> Flask:
    overrides = sso_overrides(database_url, keys)
    overrides["oidc_provider"] = {**overrides["oidc_provider"],
                                  "portal_token_endpoint_auth_method": method}
    app = create_app(overrides)
    app.extensions["roster.db"].dispose()
    app.extensions["roster.db"] = db
    return app


@pytest.fixture(scope="module", params=METHODS)
def pinned(request, database_url, keys, db) -> tuple[str, Flask]:
    """The SSO app with the portal pinned to one method."""
    return request.param, _pinned_app(database_url, keys, db, request.param)


def _post(web, path: str, data: dict[str, str], method: str):
    """POST as the portal, its credentials sent by ``method``."""
    if method == "client_secret_basic":
        return web.post(path, data=data, headers={"Authorization": BASIC})
    return web.post(path, data={**data, **POST})


def _refused(response) -> None:
    assert response.status_code == 401, response.get_json()
    assert response.get_json()["error"] == "invalid_client"


def test_a_pinned_portal_is_refused_with_the_other_method_everywhere(db, tenant, keys,
                                                                       pinned):
    """Registered with one method, the portal's secret sent the other way is invalid_client
    at the token endpoint (code exchange and refresh), introspection and revocation; sent
    its own way, each works. Discovery names only the registered method."""
    method, app = pinned
    other = next(m for m in METHODS if m != method)
    web = app.test_client()
    meta = web.get("/sso/oidc/.well-known/openid-configuration").get_json()
    for endpoint in ("token", "introspection", "revocation"):
        assert meta[f"{endpoint}_endpoint_auth_methods_supported"] == [method]
    _user, req, code = login_and_code(db, tenant, keys, web)
    exchange = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": PORTAL_CALLBACK, "code_verifier": req.verifier}
    _refused(_post(web, "/sso/oidc/token", exchange, other))
    # The refused request did not use the code up (no client was authenticated).
    tokens = _post(web, "/sso/oidc/token", exchange, method)
    assert tokens.status_code == 200, tokens.get_json()
    tokens = tokens.get_json()
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    _refused(_post(web, "/sso/oidc/token", refresh, other))
    access = {"token": tokens["access_token"]}
    _refused(_post(web, "/sso/oidc/introspect", access, other))
    assert _post(web, "/sso/oidc/introspect", access, method).get_json()["active"] is True
    _refused(_post(web, "/sso/oidc/revoke", access, other))
    assert _post(web, "/sso/oidc/introspect", access, method).get_json()["active"] is True
    assert _post(web, "/sso/oidc/revoke", access, method).status_code == 200
    assert _post(web, "/sso/oidc/introspect", access, method).get_json() == {"active": False}
    renewed = _post(web, "/sso/oidc/token", refresh, method)
    assert renewed.status_code == 200, renewed.get_json()


def test_an_unknown_auth_method_stops_the_start(database_url, keys, db):
    """A typo (or a method the provider does not offer) is a settings problem at start,
    not a portal refused at every request."""
    for value in ("client_secret_jwt", "basic", "none"):
        with pytest.raises(SettingsError, match="portal_token_endpoint_auth_method must be"):
            _pinned_app(database_url, keys, db, value)
