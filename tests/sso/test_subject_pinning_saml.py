"""SAML subject pinning: a persistent NameID signs in the user it signed in first.

Matched by email (the default), an IdP account whose email was changed to a colleague's
signed in as that colleague. A persistent NameID (SAML Core §8.3.7) is now tied to its
first user per connection (``sso_subject_links``): a login contradicting the link is refused
(``subject_mismatch``, audited ``sso:login:denied``, nothing written, the Response used up
as every refusal's); email and unspecified NameIDs are not pinned.
"""

from __future__ import annotations

import pytest

from app.cli.commands import register
from app.directory.directories import create_directory
from app.models import Organization, User
from tests.api.conftest import make_key
from tests.conftest import OPERATOR, make_tenant, rows
from tests.scim.support import PATCH_OP, Scim
from tests.sso import forge
from tests.sso.conftest import claims_for, post_response, saml_connection, start

register()

PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"


def _response(web, keys, conn, name_id: str, email: str, fmt: str = PERSISTENT) -> str:
    claims = claims_for(conn, in_response_to=start(web, conn), name_id=name_id,
                        name_id_format=fmt, attributes={"email": [email]})
    return forge.b64(forge.signed_response(claims, keys.idp))


def _login(web, keys, conn, name_id: str, email: str, fmt: str = PERSISTENT):
    return post_response(web, conn, _response(web, keys, conn, name_id, email, fmt))


def _links(db) -> list[tuple[str, str, str]]:
    return [tuple(r) for r in rows(db, "SELECT connection_id, subject, user_id FROM "
                                       "sso_subject_links ORDER BY subject")]


def _sessions(db) -> list[str]:
    return [r.user_id for r in rows(db, "SELECT user_id FROM login_sessions ORDER BY "
                                        "created_at")]


def _reasons(db) -> list[str]:
    return [r.reason for r in rows(db, "SELECT reason FROM sso_login_traces ORDER BY "
                                       "created_at")]


def _denied(db) -> list[tuple[str, str]]:
    found = rows(db, "SELECT subject_id, data FROM audit_events WHERE action = "
                     "'sso:login:denied' ORDER BY seq")
    return [(r.subject_id, r.data if isinstance(r.data, str) else str(r.data)) for r in found]


def test_the_first_login_pins_the_persistent_nameid_and_later_ones_touch_it(db, tenant,
                                                                          keys, web):
    """One link (connection, NameID, user); a second login keeps it and moves
    last_login_at."""
    alice = Scim(web, tenant).create_user("alice@acme.com")["id"]
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])

    assert _login(web, keys, conn, "pid-alice", "alice@acme.com").status_code == 303
    assert _links(db) == [(conn.id, "pid-alice", alice)]
    first = rows(db, "SELECT created_at, last_login_at FROM sso_subject_links")[0]
    assert _login(web, keys, conn, "pid-alice", "alice@acme.com").status_code == 303

    again = rows(db, "SELECT created_at, last_login_at FROM sso_subject_links")[0]
    assert _links(db) == [(conn.id, "pid-alice", alice)]
    assert again.created_at == first.created_at
    assert again.last_login_at > first.last_login_at
    assert _sessions(db) == [alice, alice]


def test_an_idp_account_given_a_colleagues_email_is_refused(db, tenant, keys, web):
    """Alice's IdP account (pinned) asserts Bob's email: refused, traced and audited under
    Bob, no session, no link written; the Response is used up (posted again: replay)."""
    scim = Scim(web, tenant)
    alice = scim.create_user("alice@acme.com")["id"]
    bob = scim.create_user("bob@acme.com")["id"]
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    assert _login(web, keys, conn, "pid-alice", "alice@acme.com").status_code == 303

    xml = _response(web, keys, conn, "pid-alice", "bob@acme.com")
    refused = post_response(web, conn, xml)

    assert refused.status_code == 403, refused.text
    assert "linked to another user" in refused.text
    assert _reasons(db) == ["subject_mismatch"]
    assert [d[0] for d in _denied(db)] == [bob]
    assert "subject_mismatch" in _denied(db)[0][1]
    assert _sessions(db) == [alice]
    assert _links(db) == [(conn.id, "pid-alice", alice)]
    assert post_response(web, conn, xml).status_code == 403
    assert _reasons(db) == ["subject_mismatch", "replay"]


def test_a_new_idp_account_with_a_pinned_users_email_is_refused(db, tenant, keys, web):
    """The other direction: a second IdP account asserts Alice's email while Alice is
    pinned to her own NameID: refused, Alice's link untouched."""
    alice = Scim(web, tenant).create_user("alice@acme.com")["id"]
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    assert _login(web, keys, conn, "pid-alice", "alice@acme.com").status_code == 303

    refused = _login(web, keys, conn, "pid-mallory", "alice@acme.com")

    assert refused.status_code == 403, refused.text
    assert _reasons(db) == ["subject_mismatch"]
    assert [d[0] for d in _denied(db)] == [alice]
    assert _links(db) == [(conn.id, "pid-alice", alice)]
    assert _sessions(db) == [alice]


@pytest.mark.parametrize("fmt", [forge.EMAIL_FORMAT, UNSPECIFIED])
def test_email_and_unspecified_nameids_are_not_pinned(db, tenant, keys, web, fmt):
    """No link is written, and an email rename at the IdP (SCIM renames the user too)
    keeps signing the user in."""
    scim = Scim(web, tenant)
    alice = scim.create_user("alice@acme.com")["id"]
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    assert _login(web, keys, conn, "alice@acme.com", "alice@acme.com", fmt).status_code == 303
    assert scim.patch(f"/Users/{alice}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "emails", "value": [
            {"value": "alice.smith@acme.com", "type": "work", "primary": True}]}]}
        ).status_code == 200

    renamed = _login(web, keys, conn, "alice.smith@acme.com", "alice.smith@acme.com", fmt)

    assert renamed.status_code == 303, renamed.text
    assert _sessions(db) == [alice, alice]
    assert _links(db) == []


def test_a_deprovisioned_leaver_gives_its_subject_to_the_rehire(db, tenant, keys, web):
    """The leaver (deactivated, keeping the email) held the NameID; the IdP account is
    reactivated for the rehire, a new user with that email: the link moves to the
    rehire, audited ``sso:subject:relink``."""
    scim = Scim(web, tenant)
    leaver = scim.create_user("alice@acme.com", externalId="00u-old")["id"]
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    assert _login(web, keys, conn, "pid-alice", "alice@acme.com").status_code == 303
    assert scim.patch(f"/Users/{leaver}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "value": {"active": False}}]}).status_code == 200
    rehire = scim.create_user("alice.b@acme.com", externalId="00u-new", emails=[
        {"value": "alice@acme.com", "type": "work", "primary": True}])["id"]

    response = _login(web, keys, conn, "pid-alice", "alice@acme.com")

    assert response.status_code == 303, response.text
    assert _sessions(db) == [leaver, rehire]
    assert _links(db) == [(conn.id, "pid-alice", rehire)]
    moved = rows(db, "SELECT subject_id, data FROM audit_events "
                     "WHERE action = 'sso:subject:relink'")
    assert [m.subject_id for m in moved] == [rehire]
    assert leaver in str(moved[0].data)


def test_unlink_lets_the_user_pin_a_new_subject(db, tenant, keys, web, run):
    """Alice's IdP account was recreated (a new NameID): refused until an operator unlinks
    her (CLI, audited); her next login pins the new NameID. The API does the same."""
    alice = Scim(web, tenant).create_user("alice@acme.com")["id"]
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    assert _login(web, keys, conn, "pid-old", "alice@acme.com").status_code == 303
    assert _login(web, keys, conn, "pid-new", "alice@acme.com").status_code == 403
    header, row = run("connection", "list", "--org", "acme").output.splitlines()
    assert (header.split()[-1], row.split()[-1]) == ("LINKS", "1")

    out = run("connection", "unlink", conn.id, "--user", alice).output

    assert "unlinked from subject pid-old" in out
    assert _links(db) == []
    assert [r.subject_id for r in rows(db, "SELECT subject_id FROM audit_events WHERE "
                                           "action = 'sso:subject:unlink'")] == [alice]
    assert "no subject link" in run("connection", "unlink", conn.id, "--user", alice,
                                    ok=False).output
    assert _login(web, keys, conn, "pid-new", "alice@acme.com").status_code == 303
    assert _links(db) == [(conn.id, "pid-new", alice)]

    admin = make_key(db, "admin", tenant.org)
    url = f"/api/v1/orgs/{tenant.org.id}/connections/{conn.id}/subject-links/{alice}"
    assert web.delete(url, headers=admin.headers).status_code == 204
    assert _links(db) == []
    assert web.delete(url, headers=admin.headers).status_code == 404


def test_a_link_of_one_organizations_connection_never_affects_anothers(db, tenant, keys, web):
    """Two organizations trust the same IdP and NameID: Acme's link does not refuse
    Globex's user, and Globex's admin cannot unlink Acme's user."""
    alice = Scim(web, tenant).create_user("alice@acme.com")["id"]
    acme = saml_connection(db, tenant, [keys.idp.cert_b64])
    other = make_tenant(db, "globex")
    bob = Scim(web, other).create_user("bob@globex.com")["id"]
    globex = saml_connection(db, other, [keys.idp.cert_b64])

    assert _login(web, keys, acme, "pid-shared", "alice@acme.com").status_code == 303
    assert _login(web, keys, globex, "pid-shared", "bob@globex.com").status_code == 303

    assert sorted(_links(db)) == sorted([(acme.id, "pid-shared", alice),
                                         (globex.id, "pid-shared", bob)])
    assert _reasons(db) == []
    admin = make_key(db, "admin", other.org)
    assert web.delete(f"/api/v1/orgs/{other.org.id}/connections/{acme.id}/subject-links/"
                      f"{alice}", headers=admin.headers).status_code == 404
    assert len(_links(db)) == 2


def test_a_new_idp_entity_forgets_the_connections_links(db, tenant, keys, web, run, tmp_path):
    """Metadata of another IdP (another entity id) imported on the connection: the old
    IdP's NameIDs mean nothing there, the links go (audited); a refresh of the same IdP
    keeps them."""
    Scim(web, tenant).create_user("alice@acme.com")
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    assert _login(web, keys, conn, "pid-alice", "alice@acme.com").status_code == 303
    same, moved = tmp_path / "same.xml", tmp_path / "moved.xml"
    same.write_text(forge.idp_metadata([keys.idp.cert_b64]))
    moved.write_text(forge.idp_metadata([keys.idp.cert_b64],
                                        entity_id="https://new-idp.test/metadata"))

    run("connection", "metadata", "import", conn.id, "--file", str(same))
    assert len(_links(db)) == 1
    run("connection", "metadata", "import", conn.id, "--file", str(moved))

    assert _links(db) == []
    forgot = rows(db, "SELECT subject_type, data FROM audit_events "
                      "WHERE action = 'sso:subject:unlink'")
    assert [f.subject_type for f in forgot] == ["sso_connection"]
    assert "idp_changed" in str(forgot[0].data)


def test_a_connection_moved_to_another_directory_re_ties_its_subjects(db, tenant, keys, web,
                                                                      run):
    """The connection reads another directory now (a move between SCIM directories): the
    user there with the email signs in, and the tie moves from the old directory's user,
    which is still live, rather than refusing everyone until an operator unlinks them."""
    old = Scim(web, tenant).create_user("alice@acme.com")["id"]
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    assert _login(web, keys, conn, "pid-alice", "alice@acme.com").status_code == 303
    with db.transaction() as s:
        org = s.get(Organization, tenant.org.id)
        entra = create_directory(s, org, "entra", "entra", OPERATOR)
        new = User(directory_id=entra.id, organization_id=tenant.org.id,
                   user_name="alice@acme.com", emails=[], primary_email="alice@acme.com")
        s.add(new)
    run("connection", "set", conn.id, "--directory", entra.id)

    assert _login(web, keys, conn, "pid-alice", "alice@acme.com").status_code == 303

    assert _sessions(db) == [old, new.id]
    assert _links(db) == [(conn.id, "pid-alice", new.id)]
    assert _reasons(db) == []
