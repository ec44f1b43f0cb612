"""Login policy: SCIM-authoritative matching, refusals of inactive users, JIT provisioning."""

from __future__ import annotations

import re

import pytest

from app.directory.directories import set_directory_status
from app.models import Directory
from app.models.directory import UserStatus
from app.models.sso import SsoConnection
from app.sso.login import AssertedUser, resolve_login
from app.sso.outcome import LoginFailed
from tests.conftest import OPERATOR, rows
from tests.sso import forge
from tests.sso.conftest import claims_for, post_response, provision, saml_connection, start


def _post(db, tenant, keys, web, conn, **claims):
    xml = forge.signed_response(claims_for(conn, in_response_to=start(web, conn), **claims),
                                keys.idp)
    return post_response(web, conn, forge.b64(xml))


@pytest.mark.parametrize("status", [UserStatus.deprovisioned, UserStatus.deleted])
def test_deprovisioned_user_is_refused_with_a_plain_page_and_audit(db, tenant, keys, web,
                                                                    status):
    """A valid assertion for a deprovisioned user: refused, sso:login:denied, traced."""
    user = provision(db, tenant, status=status)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    resp = _post(db, tenant, keys, web, conn)
    assert resp.status_code == 403
    assert "deactivated" in resp.text
    assert "<script" not in resp.text
    correlation = re.search(r"id=correlation-id>([^<]+)<", resp.text).group(1)
    denied = rows(db, "SELECT subject_id, data FROM audit_events "
                      "WHERE action = 'sso:login:denied'")
    assert [d.subject_id for d in denied] == [user.id]
    assert correlation in str(denied[0].data)
    assert rows(db, "SELECT reason FROM sso_login_traces")[0].reason == "user_deprovisioned"
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 0


def test_deprovisioned_user_is_refused_even_on_a_jit_connection(db, tenant, keys, web):
    """JIT never resurrects a user the directory took out."""
    provision(db, tenant, status=UserStatus.deprovisioned)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    assert _post(db, tenant, keys, web, conn).status_code == 403
    status = rows(db, "SELECT status FROM users")[0].status
    assert status == "deprovisioned"


def test_suspended_user_is_refused(db, tenant, keys, web):
    """active=false without deprovisioning is refused too."""
    provision(db, tenant, status=UserStatus.suspended)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    assert _post(db, tenant, keys, web, conn).status_code == 403
    assert rows(db, "SELECT reason FROM sso_login_traces")[0].reason == "user_inactive"


def test_scim_authoritative_refuses_a_user_the_directory_does_not_know(db, tenant, keys, web):
    """Under the SCIM policy an unknown user is refused and nothing is created."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    resp = _post(db, tenant, keys, web, conn)
    assert resp.status_code == 403
    assert rows(db, "SELECT reason FROM sso_login_traces")[0].reason == "unknown_user"
    assert rows(db, "SELECT count(*) AS n FROM users")[0].n == 0


def test_users_of_another_organization_never_match(db, tenant, other_tenant, keys, web):
    """alice@acme.com provisioned in globex does not let acme's connection log her in."""
    provision(db, other_tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    assert _post(db, tenant, keys, web, conn).status_code == 403


@pytest.mark.parametrize(("match_by", "claims"), [
    ("nameid", {"name_id": "alice.a"}),
    ("user_name", {"attributes": {"userName": ["alice.a"]}, "name_id": "x@y.z"}),
    ("external_id", {"attributes": {"externalId": ["00u123"]}, "name_id": "x@y.z"}),
])
def test_match_by_is_configurable(db, tenant, keys, web, match_by, claims):
    """NameID, userName or externalId can be the join key instead of email."""
    user = provision(db, tenant, "alice.a", external_id="00u123")
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], match_by=match_by)
    assert _post(db, tenant, keys, web, conn, **claims).status_code == 303
    assert rows(db, "SELECT user_id FROM login_sessions")[0].user_id == user.id


def test_jit_creates_the_user_with_groups_and_updates_it_next_time(db, tenant, keys, web):
    """JIT: the first login creates user and groups; the next one follows the assertion."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    assert _post(db, tenant, keys, web, conn).status_code == 303
    user = rows(db, "SELECT id, user_name, given_name, family_name, primary_email FROM users")
    assert [(u.user_name, u.given_name, u.family_name, u.primary_email) for u in user] == [
        ("alice@acme.com", "Alice", "Archer", "alice@acme.com")]
    groups = rows(db, "SELECT g.display_name FROM groups g JOIN memberships m "
                      "ON m.group_id = g.id")
    assert [g.display_name for g in groups] == ["Buyers"]
    attributes = {"email": ["alice@acme.com"], "givenName": ["Alicia"], "sn": ["Archer"],
                  "groups": ["Approvers"]}
    assert _post(db, tenant, keys, web, conn, attributes=attributes).status_code == 303
    assert rows(db, "SELECT given_name FROM users")[0].given_name == "Alicia"
    groups = rows(db, "SELECT g.display_name FROM groups g JOIN memberships m "
                      "ON m.group_id = g.id")
    assert [g.display_name for g in groups] == ["Approvers"]
    actions = {a.action for a in rows(db, "SELECT action FROM audit_events")}
    assert {"user:create", "user:update", "group:create", "sso:login"} <= actions


def test_jit_refuses_an_attribute_longer_than_its_column(db, tenant, keys, web):
    """A givenName past its 200 characters: refused and traced on both databases (SQLite
    would keep it, PostgreSQL fail with a 500), nothing created; 200 exactly is stored."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    attributes = {"email": ["alice@acme.com"], "givenName": ["A" * 201], "sn": ["Archer"]}
    resp = _post(db, tenant, keys, web, conn, attributes=attributes)
    assert resp.status_code == 403
    assert rows(db, "SELECT reason FROM sso_login_traces")[0].reason == "invalid_attribute"
    assert rows(db, "SELECT count(*) AS n FROM users")[0].n == 0
    attributes["givenName"] = ["A" * 200]
    assert _post(db, tenant, keys, web, conn, attributes=attributes).status_code == 303
    assert rows(db, "SELECT given_name FROM users")[0].given_name == "A" * 200


@pytest.mark.parametrize(("field", "value"), [
    ("email", "alice\x00@acme.com"), ("given_name", "\ud800"), ("subject", "a\x00")])
def test_claims_holding_nul_or_a_lone_surrogate_are_refused(db, tenant, keys, field, value):
    """OIDC claims are JSON and may carry \\u0000 or \\ud800: PostgreSQL cannot even compare
    them, so the login is refused before any query, on both databases."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    who = AssertedUser(**{"subject": "alice@acme.com", "email": "alice@acme.com", field: value})
    with db.transaction() as session, pytest.raises(LoginFailed) as refused:
        resolve_login(session, session.get(SsoConnection, conn.id), who, OPERATOR)
    assert refused.value.reason == "invalid_attribute"
    assert field.split("_")[0] in refused.value.detail
    assert refused.value.subject == (None if field == "subject" else "alice@acme.com")
    assert rows(db, "SELECT count(*) AS n FROM users")[0].n == 0


def test_jit_login_to_a_disabled_directory_is_refused(db, tenant, keys, web):
    """A JIT connection whose directory is disabled creates and logs in nobody: refused
    (directory_disabled, traced), as SCIM writes to that directory are (401)."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    with db.transaction() as s:
        set_directory_status(s, s.get(Directory, tenant.directory.id), "disabled", OPERATOR)
    assert _post(db, tenant, keys, web, conn).status_code == 403
    assert rows(db, "SELECT reason FROM sso_login_traces")[0].reason == "directory_disabled"
    assert rows(db, "SELECT count(*) AS n FROM users")[0].n == 0
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 0
