"""OIDC subject pinning: the IdP's ``sub`` signs in the user it signed in first.

OIDC Core §2: a ``sub`` is never reassigned within its issuer, so it is tied to its first
user per connection (``sso_subject_links``). An IdP account whose email is changed to a
colleague's, or a second account given a pinned user's email, is refused
(``subject_mismatch``); on a JIT connection before anything is written, and an email
renamed at the IdP keeps signing in the same user.
"""

from __future__ import annotations

from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register
from tests.conftest import rows
from tests.scim.support import Scim
from tests.sso.oidc_idp import (
    SECRET_KEY,
    follow_to_roster,
    oidc_connection,
    roster_path,
    start_login,
)
from tests.sso.test_oidc_rp import _login as iam_login
from tests.sso.test_oidc_rp import _unique

register()


def _as(hostile, sub: str, email: str, **extra: object) -> None:
    """The hostile IdP's next ID tokens say ``sub`` and ``email`` (honest otherwise)."""
    hostile.token_for = lambda claims: hostile.sign(
        {**claims, "sub": sub, "email": email, **extra})


def _login(web, conn):
    return web.get(roster_path(follow_to_roster(start_login(web, conn))))


def _links(db) -> list[tuple[str, str, str]]:
    return [tuple(r) for r in rows(db, "SELECT connection_id, subject, user_id FROM "
                                       "sso_subject_links ORDER BY subject")]


def test_a_real_idps_sub_is_pinned_and_a_second_account_with_the_email_refused(db, tenant,
                                                                                iam, web):
    """canaille: Alice's first login ties her sub; another canaille account given her
    email is refused, audited under Alice, and its callback is used up."""
    name, other = _unique("alice"), _unique("mallory")
    email = f"{name}@acme.com"
    alice = Scim(web, tenant).create_user(email)["id"]
    iam.user(name, email, "correct horse")
    iam.user(other, email, "correct horse")
    conn = oidc_connection(db, tenant, iam)
    assert iam_login(web, iam, conn, name).status_code == 303
    [(cid, sub, user_id)] = _links(db)
    assert (cid, user_id) == (conn.id, alice)
    assert sub

    callback = iam.sign_in(start_login(web, conn), other, "correct horse")
    refused = web.get(roster_path(callback))

    assert refused.status_code == 403, refused.text
    assert "linked to another user" in refused.text
    assert [s.user_id for s in rows(db, "SELECT user_id FROM login_sessions")] == [alice]
    denied = rows(db, "SELECT subject_id FROM audit_events WHERE action = 'sso:login:denied'")
    assert [d.subject_id for d in denied] == [alice]
    assert _links(db) == [(conn.id, sub, alice)]
    assert web.get(roster_path(callback)).status_code == 403
    assert [t.reason for t in rows(db, "SELECT reason FROM sso_login_traces ORDER BY "
                                       "created_at")] == ["subject_mismatch", "bad_state"]


def test_an_idp_account_given_a_colleagues_email_is_refused(db, tenant, hostile, web):
    """Alice's sub asserts Bob's email: refused, no session, Bob stays unpinned."""
    scim = Scim(web, tenant)
    alice = scim.create_user("alice@acme.com")["id"]
    bob = scim.create_user("bob@acme.com")["id"]
    conn = oidc_connection(db, tenant, hostile)
    _as(hostile, "alice-sub", "alice@acme.com")
    assert _login(web, conn).status_code == 303
    _as(hostile, "alice-sub", "bob@acme.com")

    refused = _login(web, conn)

    assert refused.status_code == 403
    assert [t.reason for t in rows(db, "SELECT reason FROM sso_login_traces")] == \
        ["subject_mismatch"]
    denied = rows(db, "SELECT subject_id FROM audit_events WHERE action = 'sso:login:denied'")
    assert [d.subject_id for d in denied] == [bob]
    assert [s.user_id for s in rows(db, "SELECT user_id FROM login_sessions")] == [alice]
    assert _links(db) == [(conn.id, "alice-sub", alice)]


def test_jit_refuses_a_colleagues_email_before_writing_and_follows_a_rename(db, tenant,
                                                                            hostile, web):
    """JIT: Alice's sub asserting Bob's email (and other groups) is refused and Bob's row
    is untouched; Alice's email renamed at the IdP updates Alice, no second user."""
    conn = oidc_connection(db, tenant, hostile, policy="jit")
    _as(hostile, "alice-sub", "alice@acme.com", given_name="Alice")
    assert _login(web, conn).status_code == 303
    _as(hostile, "bob-sub", "bob@acme.com", given_name="Bob")
    assert _login(web, conn).status_code == 303
    before = rows(db, "SELECT id, primary_email, given_name FROM users ORDER BY primary_email")
    alice, bob = before[0].id, before[1].id

    _as(hostile, "alice-sub", "bob@acme.com", given_name="Mallory", groups=["admins"])
    assert _login(web, conn).status_code == 403

    assert rows(db, "SELECT id, primary_email, given_name FROM users ORDER BY "
                    "primary_email") == before
    assert rows(db, "SELECT count(*) FROM groups WHERE display_name = 'admins'")[0][0] == 0
    _as(hostile, "alice-sub", "alice.smith@acme.com", given_name="Alice")
    assert _login(web, conn).status_code == 303
    after = rows(db, "SELECT id, primary_email FROM users ORDER BY primary_email")
    assert [tuple(r) for r in after] == [(alice, "alice.smith@acme.com"),
                                         (bob, "bob@acme.com")]
    assert _links(db) == [(conn.id, "alice-sub", alice), (conn.id, "bob-sub", bob)]
    assert [t.reason for t in rows(db, "SELECT reason FROM sso_login_traces")] == \
        ["subject_mismatch"]


def test_another_discovery_url_forgets_the_connections_links(database_url, db, tenant,
                                                             hostile, web):
    """`roster connection oidc --discovery-url` naming the same URL keeps the ties; another
    IdP's URL drops them (a sub is unique per issuer only), audited once."""
    Scim(web, tenant).create_user("alice@acme.com")
    conn = oidc_connection(db, tenant, hostile)
    _as(hostile, "alice-sub", "alice@acme.com")
    assert _login(web, conn).status_code == 303
    env = {"ROSTER_DATABASE__URL": database_url, "ROSTER_APP__SECRET_KEY": SECRET_KEY}

    def run(url: str) -> None:
        result = CliRunner().invoke(cli, ["connection", "oidc", conn.id, "--discovery-url",
                                          url, "--no-check"], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output

    run(hostile.discovery_url)
    assert len(_links(db)) == 1
    run("https://other-idp.example/.well-known/openid-configuration")

    assert _links(db) == []
    forgot = rows(db, "SELECT subject_id, data FROM audit_events "
                      "WHERE action = 'sso:subject:unlink'")
    assert [f.subject_id for f in forgot] == [conn.id]
    assert "idp_changed" in str(forgot[0].data)
