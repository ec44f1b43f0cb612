"""Across the product: SCIM provisions, the mapping grants, SAML signs in through a real IdP,
the portal gets matching claims; SCIM deactivation logs the portal out and locks the door."""

from __future__ import annotations

import dataclasses
import re

from joserfc import jwt
from joserfc.jwk import KeySet

from app.directory.organizations import add_unit
from app.mapping.preview import apply_ruleset
from app.mapping.ruleset import parse_document
from app.models import Organization
from app.sso.backchannel import run_once
from app.sso.provider_views import provider_config
from tests.conftest import OPERATOR, rows
from tests.scim.support import PATCH_OP, Scim
from tests.sso.browser import Browser
from tests.sso.conftest import add_domain, ssp_connection
from tests.sso.portal import AuthRequest, code_from, exchange, introspect, verify_id_token
from tests.sso.receiver import logout_receiver

RULES = {"policy": {"on_loss": "nothing"}, "rules": [
    {"id": "buyers", "priority": 1, "role": "buyer", "unit": "Engineering",
     "match": {"group": "Buyers"}}]}


def _portal_login(web, req: AuthRequest):
    """Portal -> authorize -> discovery -> SimpleSAMLphp -> ACS -> authorize -> callback."""
    browser = Browser(web)
    discovery = browser.go("GET", req.url())
    assert "name=email" in discovery.text
    login_form = browser.submit(discovery, email="alice@acme.com")
    assert 'name="password"' in login_form.text, login_form.text[:300]
    return browser.submit(login_form, username="alice", password="alice-pass")


def test_scim_user_signs_in_gets_mapped_claims_and_is_logged_out_when_deactivated(
        db, tenant, keys, web, ssp, sso_app, monkeypatch):
    """The whole story of issue 8, end to end, on real HTTP where it matters."""
    # The test app answers on http://roster.test; production runs behind https.
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    with db.transaction() as s:
        org = s.get(Organization, tenant.org.id)
        add_unit(s, org, "Engineering", "department", None, OPERATOR)
        apply_ruleset(s, org, parse_document(RULES), OPERATOR, max_loss_share=1.0, force=True)
    scim = Scim(web, tenant)
    alice = scim.create_user("alice@acme.com", externalId="00u-alice")["id"]
    assert scim.create_group("Buyers", [alice])
    conn = ssp_connection(db, tenant, ssp, keys)
    add_domain(db, conn, "acme.com")

    req = AuthRequest.new()
    page = _portal_login(web, req)
    assert page.status == 302, page.text[:500]
    tokens = exchange(web, code_from(page.headers["Location"], req.state), req.verifier)
    tokens = tokens.get_json()
    claims = verify_id_token(web, tokens["id_token"], req.nonce)
    assert claims["sub"] == alice
    assert claims["org_id"] == tenant.org.id
    assert [(r["role"], r["unit_path"]) for r in claims["roles"]] == [("buyer", "Engineering")]
    assert introspect(web, tokens["access_token"])["active"] is True

    resp = scim.patch(f"/Users/{alice}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "active", "value": False}]})
    assert resp.status_code in (200, 204), resp.text

    with logout_receiver() as (url, received):
        config = dataclasses.replace(provider_config(sso_app), backchannel_logout_uri=url)
        assert run_once(db, config, timeout=5)["sent"] == 1
    jwks = KeySet.import_key_set(web.get("/sso/oidc/jwks").get_json())
    logout = jwt.decode(received[0], jwks, algorithms=["RS256"]).claims
    assert (logout["sub"], logout["sid"]) == (alice, claims["sid"])
    assert introspect(web, tokens["access_token"]) == {"active": False}
    assert introspect(web, tokens["refresh_token"]) == {"active": False}

    again = _portal_login(web, AuthRequest.new())
    assert again.status == 403
    assert "deactivated" in again.text
    correlation = re.search(r"id=correlation-id>([^<]+)<", again.text).group(1)
    denied = rows(db, "SELECT subject_id, data FROM audit_events "
                      "WHERE action = 'sso:login:denied'")
    assert [d.subject_id for d in denied] == [alice]
    assert correlation in str(denied[0].data)
    trace = rows(db, "SELECT reason FROM sso_login_traces WHERE id = :i", i=correlation)
    assert [t.reason for t in trace] == ["user_deprovisioned"]
