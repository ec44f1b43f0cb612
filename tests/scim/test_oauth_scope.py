"""POST /oauth/token and the ``scope`` parameter (RFC 6749 §3.3, §4.4.2, §5.1, §5.2): a
directory's client has the one scope ``scim``, granted by default and said in every token
response; a scope it does not have, or one that breaks §3.3's grammar, is ``invalid_scope``."""

from __future__ import annotations

import pytest

from tests.conftest import rows
from tests.scim.test_oauth import SPC, _client


def _request(client, client_id: str, secret: str, scope: str | None = None):
    data = {"grant_type": "client_credentials", "client_id": client_id,
            "client_secret": secret}
    if scope is not None:
        data["scope"] = scope
    return client.post("/oauth/token", data=data)


@pytest.mark.parametrize("scope", [None, "", "scim", "scim scim"])
def test_the_scim_scope_is_granted_and_said_in_the_response(client, db, tenant, scope):
    """No scope (or an empty one, §3.2: as if omitted) gets the default, ``scim``; asking
    for it gets it. The response names the scope granted (§5.1: required when it differs
    from the request), and the token works at SCIM."""
    client_id, secret = _client(db, tenant)
    response = _request(client, client_id, secret, scope)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["scope"] == "scim"
    assert rows(db, "SELECT scope FROM issued_tokens")[0].scope == "scim"
    scim = client.get(SPC, headers={"Authorization": f"Bearer {body['access_token']}"})
    assert scim.status_code == 200


def _invalid_scope(client, db, tenant, scope, said):
    """Ask for ``scope``: a 400 ``invalid_scope`` whose description says ``said``, and no
    token issued."""
    client_id, secret = _client(db, tenant)
    response = _request(client, client_id, secret, scope)
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["error"] == "invalid_scope"
    assert said in body["error_description"]
    assert rows(db, "SELECT id FROM issued_tokens") == []
    return response


@pytest.mark.parametrize("scope", [
    "openid", "scim admin", "SCIM", "https://graph.microsoft.com/.default", "users:write",
])
def test_a_scope_the_client_does_not_have_is_invalid_scope(client, db, tenant, scope):
    """RFC 6749 §5.2: a requested scope that is unknown or exceeds the client's is
    ``invalid_scope``. It was ignored: a token was issued and the response did not say
    that its scope differed from the request (§3.3)."""
    response = _invalid_scope(client, db, tenant, scope, "scim")
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("scope", [
    " scim", "scim ", "scim  scim", "scim\tscim", 'sc"im', "sc\\im", "sc\u00efm", " ",
])
def test_a_malformed_scope_is_invalid_scope(client, db, tenant, scope):
    """RFC 6749 §3.3: scope tokens are %x21 / %x23-5B / %x5D-7E, separated by one space;
    anything else is malformed, ``invalid_scope`` (§5.2), and issues nothing."""
    _invalid_scope(client, db, tenant, scope, "malformed")


def test_a_wrong_secret_is_invalid_client_before_the_scope_is_judged(client, db, tenant):
    """Client authentication comes first: a wrong secret with a bad scope is 401
    ``invalid_client``, so the scope rules are told only to the client."""
    client_id, _secret = _client(db, tenant)
    response = _request(client, client_id, "rss_wrong", "openid")
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
