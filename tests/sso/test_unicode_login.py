"""An employee signs in with their email or userName spelled in another Unicode form or
case than the IdP provisioned it: the provisioned user is found, never a second one."""

from __future__ import annotations

import unicodedata

import pytest

from tests.conftest import rows
from tests.scim.support import Scim
from tests.sso import forge
from tests.sso.conftest import claims_for, post_response, saml_connection, start

NFC = "José.Ölçer@acme.example"
NFD = unicodedata.normalize("NFD", NFC)


def _login(tenant, keys, web, conn, attributes):
    claims = claims_for(conn, in_response_to=start(web, conn), attributes=attributes)
    return post_response(web, conn, forge.b64(forge.signed_response(claims, keys.idp)))


@pytest.mark.parametrize("match_by", ["email", "user_name"])
@pytest.mark.parametrize(("provisioned", "asserted"), [(NFC, NFD.upper()), (NFD, NFC)])
def test_a_login_in_another_normalization_finds_the_provisioned_user(
        db, tenant, keys, web, match_by, provisioned, asserted):
    """SCIM stored the email and userName in one form (NFC or NFD), the IdP asserts the
    other (and in capitals): the session is the provisioned user's."""
    user = Scim(web, tenant).create_user(provisioned)["id"]
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], match_by=match_by)

    response = _login(tenant, keys, web, conn, {"email": [asserted], "userName": [asserted]})

    assert response.status_code in (302, 303), response.text[:500]
    sessions = rows(db, "SELECT user_id FROM login_sessions WHERE revoked_at IS NULL")
    assert [s.user_id for s in sessions] == [user]
    assert len(rows(db, "SELECT id FROM users")) == 1
