"""A SAML assertion refused because its user was deprovisioned is used up all the same.

The refusal rolled the login's transaction back, and with it the AuthnRequest's claim and
the assertion's entry in the replay cache (SAML Profiles §4.1.4.5: a bearer assertion is
not accepted twice). So an assertion issued before the termination (the login was in flight
when the IdP's ``active=false`` committed) could be posted again once the user was
reactivated, and opened a session: an authentication made before the termination came
back to life after it. The OIDC callback uses its attempt up in a transaction of its own;
the ACS now commits the claim and the replay-cache entry of a refused login too.
"""

from __future__ import annotations

from tests.conftest import rows
from tests.scim.support import PATCH_OP, Scim
from tests.sso import forge
from tests.sso.conftest import claims_for, post_response, provision, saml_connection, start


def _active(value: bool) -> dict:
    return {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active",
                                                   "value": value}]}


def test_an_assertion_refused_for_a_leaver_is_not_accepted_after_a_reactivation(
        db, tenant, keys, web, sso_app):
    """The AuthnRequest was sent, the user deprovisioned (SCIM active=false), the Response
    refused (user_deprovisioned); the user is reactivated and the same Response posted
    again: refused as a replay, no session opened."""
    user = provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    xml = forge.b64(forge.signed_response(claims_for(conn, in_response_to=start(web, conn)),
                                          keys.idp))
    scim = Scim(sso_app.test_client(), tenant)
    assert scim.patch(f"/Users/{user.id}", _active(False)).status_code == 200

    refused = post_response(web, conn, xml)
    assert refused.status_code == 403, refused.text
    assert scim.patch(f"/Users/{user.id}", _active(True)).status_code == 200

    again = post_response(web, conn, xml)

    assert again.status_code == 403, again.text
    assert [t.reason for t in rows(db, "SELECT reason FROM sso_login_traces ORDER BY "
                                       "created_at")] == ["user_deprovisioned", "replay"]
    assert rows(db, "SELECT count(*) FROM login_sessions WHERE user_id = :u", u=user.id
                )[0][0] == 0


def test_an_unsolicited_assertion_refused_for_a_leaver_is_not_accepted_later(
        db, tenant, keys, web, sso_app):
    """IdP-initiated: the same, through the replay cache alone."""
    user = provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], allow_idp_initiated=True)
    xml = forge.b64(forge.signed_response(claims_for(conn), keys.idp))
    scim = Scim(sso_app.test_client(), tenant)
    assert scim.patch(f"/Users/{user.id}", _active(False)).status_code == 200
    assert post_response(web, conn, xml).status_code == 403
    assert scim.patch(f"/Users/{user.id}", _active(True)).status_code == 200

    again = post_response(web, conn, xml)

    assert again.status_code == 403, again.text
    assert rows(db, "SELECT count(*) FROM login_sessions WHERE user_id = :u", u=user.id
                )[0][0] == 0
