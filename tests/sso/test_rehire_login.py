"""A rehire signs in while the leaver it replaces waits for its purge.

A SCIM-deleted user is kept for ``lifecycle.retention_days`` (a restore may bring it back)
and keeps its email and externalId meanwhile. A new user of the directory with the same
email (a rehire, a new hire given the leaver's address) or the same externalId (Entra maps
it from mailNickname, which is reused) was refused as ``ambiguous_user`` at every login for
those 30 days: the deleted user still matched. It now gives way to the live user; when no
live user matches, the deleted one is still found and refused as deprovisioned.
"""

from __future__ import annotations

import pytest

from tests.conftest import rows
from tests.scim.support import Scim
from tests.sso import forge
from tests.sso.conftest import claims_for, post_response, saml_connection, start

# match_by -> (the leaver's and the rehire's SCIM userName and externalId, the assertion's
# attributes naming the rehire)
CASES = {
    "email": (("alice@acme.com", "00u-old"), ("alice@acme.com", "00u-new"),
              {"email": ["alice@acme.com"]}),
    "external_id": (("alice@acme.com", "alice"), ("alice.b@acme.com", "alice"),
                    {"email": ["alice.b@acme.com"], "externalId": ["alice"]}),
}


def _login(db, tenant, keys, web, conn, attributes):
    claims = claims_for(conn, in_response_to=start(web, conn), attributes=attributes)
    return post_response(web, conn, forge.b64(forge.signed_response(claims, keys.idp)))


@pytest.mark.parametrize("match_by", sorted(CASES))
def test_a_rehire_signs_in_while_the_deleted_leaver_is_kept(db, tenant, keys, web, match_by):
    """The leaver was SCIM-deleted, the rehire created with the same email (externalId):
    the rehire's login opens a session for the rehire, not a refusal."""
    (old_name, old_ext), (new_name, new_ext), attributes = CASES[match_by]
    scim = Scim(web, tenant)
    leaver = scim.create_user(old_name, externalId=old_ext)["id"]
    assert scim.delete(f"/Users/{leaver}").status_code == 204
    rehire = scim.create_user(new_name, externalId=new_ext)["id"]
    assert rehire != leaver
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], match_by=match_by)

    response = _login(db, tenant, keys, web, conn, attributes)

    assert response.status_code in (302, 303), response.text[:500]
    assert rows(db, "SELECT reason FROM sso_login_traces") == []
    sessions = rows(db, "SELECT user_id FROM login_sessions WHERE revoked_at IS NULL")
    assert [s.user_id for s in sessions] == [rehire]


def test_the_deleted_leaver_alone_is_still_refused_as_deprovisioned(db, tenant, keys, web):
    """No live user has the email: the deleted one is found and refused, as before."""
    scim = Scim(web, tenant)
    leaver = scim.create_user("alice@acme.com", externalId="00u-old")["id"]
    assert scim.delete(f"/Users/{leaver}").status_code == 204
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])

    response = _login(db, tenant, keys, web, conn, {"email": ["alice@acme.com"]})

    assert response.status_code == 403
    assert [t.reason for t in rows(db, "SELECT reason FROM sso_login_traces")] == \
        ["user_deprovisioned"]
    assert rows(db, "SELECT count(*) FROM login_sessions")[0][0] == 0


def test_a_rehire_signs_in_while_the_deactivated_leaver_keeps_the_email(db, tenant, keys,
                                                                        web):
    """Okta deactivates leavers and never deletes them: the leaver stays deprovisioned with
    its email, and the rehire (a new userName, the same email) was refused as
    ``ambiguous_user`` at every login. The live user that is not deprovisioned is found;
    two such users with the email are still ambiguous."""
    scim = Scim(web, tenant)
    leaver = scim.create_user("alice@acme.com", externalId="00u-old")["id"]
    assert scim.patch(f"/Users/{leaver}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": False}}]}).status_code == 200
    rehire = scim.create_user("alice.b@acme.com", externalId="00u-new", emails=[
        {"value": "alice@acme.com", "type": "work", "primary": True}])["id"]
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])

    response = _login(db, tenant, keys, web, conn, {"email": ["alice@acme.com"]})

    assert response.status_code in (302, 303), response.text[:500]
    assert rows(db, "SELECT reason FROM sso_login_traces") == []
    sessions = rows(db, "SELECT user_id FROM login_sessions WHERE revoked_at IS NULL")
    assert [s.user_id for s in sessions] == [rehire]

    scim.create_user("alice.c@acme.com", externalId="00u-third", emails=[
        {"value": "alice@acme.com", "type": "work", "primary": True}])
    refused = _login(db, tenant, keys, web, conn, {"email": ["alice@acme.com"]})
    assert refused.status_code == 403
    assert [t.reason for t in rows(db, "SELECT reason FROM sso_login_traces")] == \
        ["ambiguous_user"]
