"""A deflate bomb at the SingleLogoutService (HTTP-Redirect binding, SAML Bindings §3.4.4.1)
is refused before python3-saml inflates it whole."""

from __future__ import annotations

import base64
import zlib

import pytest

from app.sso.slo import INFLATED_MAX
from tests.conftest import rows
from tests.sso.conftest import saml_connection

_PROTOCOL = "urn:oasis:names:tc:SAML:2.0:protocol"


def _deflated(xml: bytes) -> str:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return base64.b64encode(packer.compress(xml) + packer.flush()).decode()


@pytest.mark.parametrize("message", ["SAMLRequest", "SAMLResponse"])
def test_a_message_inflating_past_the_limit_is_refused_unread(db, tenant, keys, web, message):
    """A few kilobytes that inflate to 2 MB: 403, trace slo_invalid naming the limit (it was
    inflated and parsed in full, then refused for its signature)."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64],
                           idp_slo_url="https://idp.forge.test/slo")
    if message == "SAMLResponse":
        with web.session_transaction() as browser:
            browser["sso_slo_request"] = "_r1"
    tag = message.removeprefix("SAML")
    bomb = _deflated(f"<samlp:Logout{tag} xmlns:samlp='{_PROTOCOL}'>".encode()
                     + b" " * 2_000_000 + f"</samlp:Logout{tag}>".encode())
    assert len(bomb) < 8190
    response = web.get(f"/sso/saml/{conn.id}/slo", query_string={message: bomb})
    assert response.status_code == 403, response.text
    traces = rows(db, "SELECT id, reason, detail FROM sso_login_traces")
    assert [(t.reason, t.detail) for t in traces] == [
        ("slo_invalid", f"the {message} inflates past {INFLATED_MAX} bytes")]
    assert traces[0].id in response.text


def test_a_message_within_the_limit_is_left_to_python3_saml(db, tenant, keys, web):
    """An unsigned LogoutRequest of ordinary size is refused for what it is."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64],
                           idp_slo_url="https://idp.forge.test/slo")
    request = _deflated(f"<samlp:LogoutRequest xmlns:samlp='{_PROTOCOL}'/>".encode())
    response = web.get(f"/sso/saml/{conn.id}/slo", query_string={"SAMLRequest": request})
    assert response.status_code == 403
    detail = rows(db, "SELECT detail FROM sso_login_traces")[0].detail
    assert "inflates" not in detail
