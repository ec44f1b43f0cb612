"""A connection without a directory cannot sign in the users of another connection's domain.

Such a connection matches any user of its organization, whichever directory provisioned
it. With a second IdP in the organization (a subsidiary's, a partner's), that IdP could sign
in any employee of the first by asserting their email. A user whose email domain an operator
verified for other connections of the organization, and not for this one, is refused
(``domain_of_another_connection``, an ``sso:login:denied`` audit record).
"""

from __future__ import annotations

from app.ids import new_id
from app.models.sso import SsoConnection
from tests.conftest import rows
from tests.scim.support import Scim
from tests.sso import forge
from tests.sso.conftest import (
    IDP_ENTITY,
    add_domain,
    claims_for,
    post_response,
    saml_connection,
    start,
)


def _directoryless(db, tenant, keys) -> SsoConnection:
    """A SAML connection of the tenant's organization with no directory, trusting the
    test IdP's key, matching users by email."""
    with db.transaction() as s:
        conn = SsoConnection(organization_id=tenant.org.id, name=f"partner-{new_id()[:8]}",
                             protocol="saml", idp_entity_id=IDP_ENTITY,
                             idp_sso_url="https://partner.example/sso",
                             idp_certs=[keys.idp.cert_b64], attribute_map={},
                             oidc_algorithms=[], directory_id=None, match_by="email")
        s.add(conn)
    return conn


def _login(web, keys, conn, email: str):
    claims = claims_for(conn, in_response_to=start(web, conn),
                        attributes={"email": [email]})
    return post_response(web, conn, forge.b64(forge.signed_response(claims, keys.idp)))


def _sessions(db) -> list[str]:
    return [r.user_id for r in rows(db, "SELECT user_id FROM login_sessions "
                                        "WHERE revoked_at IS NULL")]


def test_a_directoryless_connection_cannot_sign_in_another_connections_domain(db, tenant,
                                                                              keys, web):
    alice = Scim(web, tenant).create_user("alice@acme.com")["id"]
    owner = saml_connection(db, tenant, [keys.idp.cert_b64])
    add_domain(db, owner, "acme.com")
    partner = _directoryless(db, tenant, keys)

    response = _login(web, keys, partner, "alice@acme.com")

    assert response.status_code == 403, response.text[:500]
    assert "another sign-in option" in response.text
    assert [t.reason for t in rows(db, "SELECT reason FROM sso_login_traces")] == \
        ["domain_of_another_connection"]
    assert _sessions(db) == []
    denied = rows(db, "SELECT subject_id, data FROM audit_events "
                      "WHERE action = 'sso:login:denied'")
    assert [d.subject_id for d in denied] == [alice]


def test_a_directoryless_connection_signs_in_its_own_domain_and_unrouted_ones(db, tenant,
                                                                              keys, web):
    """The domain verified for this connection too (a move between IdPs), or verified for
    no connection, or only unverified elsewhere: the login goes through as before."""
    scim = Scim(web, tenant)
    alice = scim.create_user("alice@acme.com")["id"]
    bob = scim.create_user("bob@elsewhere.com")["id"]
    carol = scim.create_user("carol@pending.com")["id"]
    owner = saml_connection(db, tenant, [keys.idp.cert_b64])
    add_domain(db, owner, "acme.com")
    add_domain(db, owner, "pending.com", verified=False)
    partner = _directoryless(db, tenant, keys)
    add_domain(db, partner, "acme.com")

    for email in ("alice@acme.com", "bob@elsewhere.com", "carol@pending.com"):
        response = _login(web, keys, partner, email)
        assert response.status_code in (302, 303), (email, response.text[:500])

    assert sorted(_sessions(db)) == sorted([alice, bob, carol])
    assert rows(db, "SELECT reason FROM sso_login_traces") == []


def test_a_connection_reading_a_directory_signs_in_that_directorys_users(db, tenant, keys,
                                                                         web):
    """A connection bound to the directory that provisioned the user vouches for it,
    whichever connection the domain is routed to."""
    alice = Scim(web, tenant).create_user("alice@acme.com")["id"]
    owner = saml_connection(db, tenant, [keys.idp.cert_b64])
    add_domain(db, owner, "acme.com")
    second = saml_connection(db, tenant, [keys.idp.cert_b64])

    response = _login(web, keys, second, "alice@acme.com")

    assert response.status_code in (302, 303), response.text[:500]
    assert _sessions(db) == [alice]
