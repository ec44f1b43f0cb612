"""The redirect allow-list (sso.allowed_redirect_urls) admits a path under an allowed URL
only when no server that decodes and normalizes it (RFC 3986 §6.2.2) could read another
path: dot segments, encoded or not, and encoded slashes or backslashes are refused unless
the URL equals an allowed one exactly (RFC 9700 §4.1.3)."""

from __future__ import annotations

import pytest

from app.sso.redirects import is_allowed_redirect
from tests.sso import forge
from tests.sso.conftest import PORTAL, claims_for, post_response, provision, saml_connection, start

APP = "https://portal.example/app/"
EXACT = "https://portal.example/app/a%2Fb/%2e%2e/c"

TABLE = [
    # Ordinary paths under the prefix, dots inside names, encodings of ordinary characters.
    ("https://portal.example/app/", True),
    ("https://portal.example/app/orders/42", True),
    ("https://portal.example/app/a..b/c.d", True),
    ("https://portal.example/app/.well-known/x", True),
    ("https://portal.example/app/a%20b/%C3%A9t%C3%A9", True),
    ("https://portal.example/app/100%25", True),
    ("https://portal.example/app/orders?next=..%2f..%2fadmin", True),
    ("https://portal.example/app/x#../../admin", True),
    ("https://PORTAL.example:443/app/x", True),
    # Dot segments, plain or encoded (once, twice), with a parameter, in full width.
    ("https://portal.example/app/../admin", False),
    ("https://portal.example/app/./admin", False),
    ("https://portal.example/app/%2e%2e/%2e%2e/admin", False),
    ("https://portal.example/app/.%2E/admin", False),
    ("https://portal.example/app/%252e%252e/admin", False),
    ("https://portal.example/app/..;/admin", False),
    ("https://portal.example/app/%2e%2e;x/admin", False),
    ("https://portal.example/app/%EF%BC%8E%EF%BC%8E/admin", False),
    ("https://portal.example/app/\uff0e\uff0e/admin", False),
    ("https://portal.example/app/..", False),
    # Encoded slashes and backslashes, which join a dot segment once decoded.
    ("https://portal.example/app/..%2f..%2fadmin", False),
    ("https://portal.example/app/..%2F..%2Fadmin", False),
    ("https://portal.example/app/%2e%2e%2fadmin", False),
    ("https://portal.example/app/a%2fb", False),
    ("https://portal.example/app/..%5c..%5cadmin", False),
    ("https://portal.example/app/a%5Cb", False),
    ("https://portal.example/app/..%252f..%252fadmin", False),
    ("https://portal.example/app/..\uff0f..\uff0fadmin", False),
    ("https://portal.example/app/..\\admin", False),
    # An encoding that is no UTF-8 (an overlong dot), or still encoded after three rounds.
    ("https://portal.example/app/%C0%AE%C0%AE/admin", False),
    ("https://portal.example/app/%2525252e", False),
    # Outside the prefix or the origin, as before.
    ("https://portal.example/admin", False),
    ("https://portal.example/application", False),
    ("https://evil.example/app/", False),
    ("http://portal.example/app/", False),
    # An allowed URL given exactly is allowed, whatever its path holds; a path under it is not.
    (EXACT, True),
    (EXACT + "/d", False),
    ("https://portal.example/app/a%2Fb/%2E%2E/c", False),
]


@pytest.mark.parametrize(("url", "allowed"), TABLE)
def test_a_path_that_decodes_to_another_is_refused_unless_allowed_exactly(url, allowed):
    """Each URL against the prefix rule https://portal.example/app/ and the exact entry
    EXACT. Before: an encoded slash or backslash was an ordinary character, so
    ..%2f..%2fadmin, encodings decoded twice and full-width dots passed the prefix rule,
    and EXACT itself was refused (its %2e%2e)."""
    assert is_allowed_redirect(url, [APP, EXACT]) is allowed


@pytest.mark.parametrize("target", ["app/..%2f..%2fadmin", "app/%252e%252e/admin",
                                    "app/..%5cadmin"])
def test_the_login_refuses_such_a_next_and_the_acs_such_a_relay_state(db, tenant, keys, web,
                                                                       target):
    """Through the SAML endpoints (allow-list https://portal.test/): GET .../login with such
    a next is refused (400, the page says why) and sends nobody to the IdP; a login whose
    RelayState is such a URL signs in but does not go there (the signed-in page). Before:
    a 303 to the IdP, and a 303 to the URL after the login."""
    bad = PORTAL + target
    provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    refused = web.get(f"/sso/saml/{conn.id}/login", query_string={"next": bad})
    assert refused.status_code == 400, refused.headers
    assert "The page to return to is not allowed." in refused.text

    request_id = start(web, conn, None)
    xml = forge.signed_response(claims_for(conn, in_response_to=request_id), keys.idp)
    landed = post_response(web, conn, forge.b64(xml), relay_state=bad)
    assert landed.status_code == 200, landed.headers
    assert "Location" not in landed.headers
    assert "You are signed in as" in landed.text
