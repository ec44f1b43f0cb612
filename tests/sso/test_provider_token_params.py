"""The portal's optional token parameters: a narrower ``scope`` at a refresh (RFC 6749 §6)
and a ``token_type_hint`` Roster does not know (RFC 7662 §2.1, RFC 7009 §2.1)."""

from __future__ import annotations

from tests.conftest import rows
from tests.sso.portal import BASIC, exchange, introspect, login_and_code

FULL = "openid email profile organization offline_access"


def _refresh(web, refresh_token: str, scope: str | None = None):
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    if scope is not None:
        data["scope"] = scope
    return web.post("/sso/oidc/token", data=data, headers={"Authorization": BASIC})


def test_a_narrower_scope_at_a_refresh_narrows_the_access_token_only(db, tenant, keys, web):
    """RFC 6749 §6: the new refresh token's scope MUST be identical to the one exchanged.
    A refresh asking for ``openid`` alone gave a refresh token of ``openid`` alone: the
    grant had lost its other scopes for good (a later refresh asking them back was
    invalid_scope), and the user had to sign in again."""
    _user, req, code = login_and_code(db, tenant, keys, web)
    first = exchange(web, code, req.verifier).get_json()
    narrow = _refresh(web, first["refresh_token"], "openid")
    assert narrow.status_code == 200, narrow.text
    narrow_tokens = narrow.get_json()
    assert narrow_tokens["scope"] == "openid"
    assert introspect(web, narrow_tokens["access_token"])["scope"] == "openid"
    assert introspect(web, narrow_tokens["refresh_token"])["scope"] == FULL
    full = _refresh(web, narrow_tokens["refresh_token"], FULL)
    assert full.status_code == 200, full.text
    assert introspect(web, full.get_json()["access_token"])["scope"] == FULL
    again = _refresh(web, full.get_json()["refresh_token"])
    assert again.status_code == 200, again.text
    assert again.get_json()["scope"] == FULL
    wider = _refresh(web, again.get_json()["refresh_token"], FULL + " admin")
    assert wider.status_code == 400
    assert wider.get_json()["error"] == "invalid_scope"
    scopes = {r.scope for r in rows(db, "SELECT scope FROM issued_tokens "
                                        "WHERE token_type = 'refresh'")}
    assert scopes == {FULL}


def test_a_token_type_hint_roster_does_not_know_is_only_a_hint(db, tenant, keys, web):
    """RFC 7662 §2.1, RFC 7009 §2.1: a server that cannot find the token by its hint
    searches every type. An unknown hint (``id_token``) was ``unsupported_token_type`` with
    status 401, as if the portal's own credentials had been refused, and the token was
    neither introspected nor revoked."""
    _user, req, code = login_and_code(db, tenant, keys, web)
    tokens = exchange(web, code, req.verifier).get_json()
    for hint in ("id_token", "urn:ietf:params:oauth:token-type:jwt", ""):
        resp = web.post("/sso/oidc/introspect", headers={"Authorization": BASIC},
                        data={"token": tokens["access_token"], "token_type_hint": hint})
        assert resp.status_code == 200, resp.text
        assert resp.get_json()["active"] is True
    resp = web.post("/sso/oidc/revoke", headers={"Authorization": BASIC},
                    data={"token": tokens["refresh_token"], "token_type_hint": "id_token"})
    assert resp.status_code == 200, resp.text
    assert introspect(web, tokens["refresh_token"]) == {"active": False}
    assert introspect(web, tokens["access_token"]) == {"active": False}
    missing = web.post("/sso/oidc/revoke", headers={"Authorization": BASIC},
                       data={"token_type_hint": "id_token"})
    assert missing.status_code == 400
    assert missing.get_json()["error"] == "invalid_request"
