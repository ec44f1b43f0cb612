"""A JIT login in which the IdP no longer asserts the user's last mapped group.

The login writes what the IdP asserts (its groups) and re-evaluates the mapping, which,
by the organization's ``on_loss``, deprovisions (or suspends) the user; the login is then
refused. The refusal rolled the login's transaction back, the mapping's decision with it:
the user stayed active with its grant, its open session and portal tokens stayed live, and
a *failed* deprovisioning record and a ``user:deprovision_failed`` alert were written (every
later attempt wrote another). Now the IdP's word stands: the user is out, its sessions and
tokens are revoked, the record is ``applied``, and the login is refused.
"""

from __future__ import annotations

from app.directory.organizations import add_unit
from app.mapping.preview import apply_ruleset
from app.mapping.ruleset import parse_document
from app.models import Organization
from tests.conftest import OPERATOR, rows
from tests.lifecycle.support import add_sessions_and_tokens
from tests.sso import forge
from tests.sso.conftest import claims_for, post_response, saml_connection, start
from tests.sso.oidc_idp import follow_to_roster, oidc_connection, roster_path, start_login


def _rules(db, tenant, on_loss: str, group: str) -> None:
    with db.transaction() as s:
        org = s.get(Organization, tenant.org.id)
        add_unit(s, org, "Purchasing", "department", None, OPERATOR)
        apply_ruleset(s, org, parse_document({"policy": {"on_loss": on_loss}, "rules": [
            {"id": "buyers", "role": "buyer", "unit": "Purchasing", "match": {"group": group}}]}),
            OPERATOR, max_loss_share=1.0, force=True)


def _saml_login(web, keys, conn, groups: list[str]):
    attributes = {"email": ["alice@acme.com"], "givenName": ["Alice"], "groups": groups}
    claims = claims_for(conn, in_response_to=start(web, conn), attributes=attributes)
    return post_response(web, conn, forge.b64(forge.signed_response(claims, keys.idp)))


def _signed_in_user(db, tenant) -> str:
    """The user the first login created, with its grant, and two more login sessions with
    the portal's tokens."""
    [user] = rows(db, "SELECT id, status FROM users")
    assert user.status == "active"
    assert rows(db, "SELECT count(*) FROM grants WHERE user_id = :u", u=user.id)[0][0] == 1
    with db.transaction() as s:
        add_sessions_and_tokens(s, tenant.org.id, user.id)
    return user.id


def _out(db, user_id: str, status: str) -> None:
    """The user is out as the mapping decided, with nothing of it left live."""
    assert rows(db, "SELECT status FROM users WHERE id = :u", u=user_id)[0][0] == status
    assert rows(db, "SELECT count(*) FROM grants WHERE user_id = :u", u=user_id)[0][0] == 0
    assert [t.reason for t in rows(db, "SELECT reason FROM sso_login_traces")] == [
        "user_deprovisioned" if status == "deprovisioned" else "user_inactive"]


def test_a_saml_jit_login_without_the_last_group_deprovisions_and_is_refused(db, tenant,
                                                                            keys, web):
    """on_loss deprovision: the record is applied, every session and token revoked."""
    _rules(db, tenant, "deprovision", "Buyers")
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    assert _saml_login(web, keys, conn, ["Buyers"]).status_code == 303
    user_id = _signed_in_user(db, tenant)

    refused = _saml_login(web, keys, conn, [])

    assert refused.status_code == 403
    _out(db, user_id, "deprovisioned")
    records = rows(db, "SELECT trigger, outcome, sessions_revoked FROM deprovision_records")
    assert [(r.trigger, r.outcome, r.sessions_revoked) for r in records] == [
        ("lost_all_grants", "applied", 3)]
    for table in ("login_sessions", "issued_tokens"):
        assert rows(db, f"SELECT count(*) FROM {table} WHERE user_id = :u AND "
                        "revoked_at IS NULL", u=user_id)[0][0] == 0
    assert rows(db, "SELECT count(*) FROM audit_events WHERE action = "
                    "'user:deprovision_failed'")[0][0] == 0
    types = [r.type for r in rows(db, "SELECT type FROM outbox_events WHERE aggregate_id = :u "
                                      "ORDER BY id", u=user_id)]
    assert types.count("user.deprovisioned") == 1, types
    assert types.count("session.revoked") == 3, types


def test_a_saml_jit_login_without_the_last_group_suspends_and_is_refused(db, tenant, keys,
                                                                        web):
    """on_loss suspend: the suspension stands (its tokens refused), the login is refused."""
    _rules(db, tenant, "suspend", "Buyers")
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    assert _saml_login(web, keys, conn, ["Buyers"]).status_code == 303
    user_id = _signed_in_user(db, tenant)

    assert _saml_login(web, keys, conn, []).status_code == 403

    _out(db, user_id, "suspended")
    assert rows(db, "SELECT count(*) FROM outbox_events WHERE type = 'user.suspended'")[0][0] \
        == 1


def test_an_oidc_jit_login_without_the_last_group_deprovisions_and_is_refused(db, tenant,
                                                                             hostile, web):
    """The same through an OIDC connection: the ID token's groups claim lost the group."""
    _rules(db, tenant, "deprovision", "buyers")
    conn = oidc_connection(db, tenant, hostile, policy="jit")
    assert web.get(roster_path(follow_to_roster(start_login(web, conn)))).status_code == 303
    user_id = _signed_in_user(db, tenant)
    hostile.token_for = lambda claims: hostile.sign({**claims, "groups": []})

    refused = web.get(roster_path(follow_to_roster(start_login(web, conn))))

    assert refused.status_code == 403, refused.text
    _out(db, user_id, "deprovisioned")
    assert [(r.trigger, r.outcome) for r in rows(
        db, "SELECT trigger, outcome FROM deprovision_records")] == [
        ("lost_all_grants", "applied")]
