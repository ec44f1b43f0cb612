"""Login secrets at rest: the PKCE verifier of an attempt in flight and the customer IdP's
ID token of a login are sealed with app.secret_key (never in clear in the database, never
in the browser's cookie), survive a key rotation, and `roster connection rekey` moves them
to the new key; logins and logouts at a real IdP (canaille) keep working."""

from __future__ import annotations

import base64
import hashlib
import zlib
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register
from app.db import utcnow
from app.models.sso import LoginSession
from app.sso.sealed import PKCE_VERIFIER, UPSTREAM_ID_TOKEN, sealer
from tests.conftest import rows
from tests.sso.conftest import PORTAL_LOGGED_OUT, provision
from tests.sso.oidc_idp import SECRET_KEY, oidc_connection, roster_path, start_login
from tests.sso.test_rp_logout import END, _canaille_login
from tests.sso.test_secret_key_rotation import NEW_KEY, _app

register()


def _cookie_text(web) -> str:
    """The browser's session cookie as Flask wrote it, its payload inflated when compressed
    (itsdangerous: a leading '.' marks zlib)."""
    value = web.get_cookie("session").value
    payload = value.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return (zlib.decompress(raw) if value.startswith(".") else raw).decode()


def test_the_idps_id_token_is_sealed_with_the_login_not_in_the_cookie(db, tenant, iam, web):
    """After an OIDC login the IdP's ID token is in login_sessions sealed, not in the signed
    cookie; the portal's logout sends it to canaille as id_token_hint and clears it."""
    conn, tokens, _browser = _canaille_login(db, tenant, iam, web, "seal")
    [login] = rows(db, "SELECT upstream_id_token FROM login_sessions")
    id_token = sealer(UPSTREAM_ID_TOKEN, SECRET_KEY).open(login.upstream_id_token)
    assert id_token is not None
    assert id_token.startswith("eyJ")
    # Not stored readable: no part of the token appears in the sealed text (a bare "eyJ"
    # check failed now and then: random ciphertext in base64 spells it about 1 time in 100).
    for part in id_token.split("."):
        assert part[:24] not in login.upstream_id_token
    cookie = _cookie_text(web)
    assert "sso_login_id" in cookie
    assert id_token not in cookie
    assert id_token.split(".")[1] not in cookie

    resp = web.get(END, query_string={"id_token_hint": tokens["id_token"],
                                      "post_logout_redirect_uri": PORTAL_LOGGED_OUT})
    assert resp.status_code == 303, resp.text
    query = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert query["id_token_hint"] == [id_token]
    assert query["client_id"] == [conn.oidc_client_id]
    assert [r.upstream_id_token for r in rows(db, "SELECT upstream_id_token "
                                                  "FROM login_sessions")] == [None]


def test_a_cookie_from_before_the_upgrade_still_gives_its_id_token_hint(db, tenant, iam, web):
    """A browser that signed in before migration 0027 carries the ID token in its cookie:
    its logout at the IdP still sends it."""
    conn, tokens, _browser = _canaille_login(db, tenant, iam, web, "legacy")
    with db.transaction() as s:
        s.connection().exec_driver_sql("UPDATE login_sessions SET upstream_id_token = NULL")
    with web.session_transaction() as cookie:
        cookie["sso_oidc"] = {"connection": conn.id, "id_token": "eyJold.eyJcookie.sig"}
    resp = web.get(END, query_string={"id_token_hint": tokens["id_token"],
                                      "post_logout_redirect_uri": PORTAL_LOGGED_OUT})
    assert resp.status_code == 303, resp.text
    assert parse_qs(urlsplit(resp.headers["Location"]).query)["id_token_hint"] == [
        "eyJold.eyJcookie.sig"]


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()
                                    ).rstrip(b"=").decode()


def test_login_secrets_survive_a_key_rotation_and_rekey_moves_them(db, tenant, iam, sso_app,
                                                                   database_url):
    """An attempt begun under the old key finishes under the new one with the previous key
    given; `roster connection rekey` seals the verifiers in flight and the IdP ID tokens
    with the new key, after which the previous key can go."""
    name = f"rk{tenant.org.id[:8]}"
    provision(db, tenant, f"{name}@acme.com")
    iam.user(name, f"{name}@acme.com", "correct horse")
    conn = oidc_connection(db, tenant, iam)
    rotated = _app(sso_app, db, secret_key=NEW_KEY, previous_secret_key=SECRET_KEY)
    old_browser = sso_app.test_client()
    authorize = start_login(old_browser, conn)  # sealed under SECRET_KEY
    answer = rotated.test_client()
    answer.set_cookie("session", old_browser.get_cookie("session").value,
                      domain="localhost")
    callback = iam.sign_in(authorize, name, "correct horse")
    done = answer.get(roster_path(callback))
    assert done.status_code == 303, done.text
    [login] = rows(db, "SELECT upstream_id_token FROM login_sessions")
    # Sealed by the rotated app: under the new key already.
    assert sealer(UPSTREAM_ID_TOKEN, NEW_KEY).open(login.upstream_id_token)

    # One attempt in flight and one login token under the old key, then rekey.
    pending = start_login(sso_app.test_client(), conn)
    challenge = parse_qs(urlsplit(pending).query)["code_challenge"][0]
    with db.transaction() as s:
        s.connection().exec_driver_sql(
            "UPDATE login_sessions SET upstream_id_token = '"
            + sealer(UPSTREAM_ID_TOKEN, SECRET_KEY).seal("eyJa.eyJb.c") + "'")
    env = {"ROSTER_DATABASE__URL": database_url, "ROSTER_APP__ENV": "test",
           "ROSTER_APP__SECRET_KEY": NEW_KEY, "ROSTER_APP__PREVIOUS_SECRET_KEY": SECRET_KEY}
    result = CliRunner().invoke(cli, ["connection", "rekey"], env=env)
    assert result.exit_code == 0, result.output
    assert "PKCE verifiers of 1 login attempt(s) in flight and the IdP ID tokens of " \
           "1 login(s)" in result.output
    [attempt] = rows(db, "SELECT code_verifier FROM oidc_login_requests "
                         "WHERE used_at IS NULL")
    only_new = sealer(PKCE_VERIFIER, NEW_KEY)
    assert _s256(only_new.open(attempt.code_verifier) or "") == challenge
    [login] = rows(db, "SELECT upstream_id_token FROM login_sessions")
    assert sealer(UPSTREAM_ID_TOKEN, NEW_KEY).open(login.upstream_id_token) == "eyJa.eyJb.c"


def test_a_verifier_no_key_opens_ends_the_login_as_missing_pkce_verifier(db, tenant, iam,
                                                                         sso_app):
    """A key changed without app.previous_secret_key: the attempt in flight is refused
    (missing_pkce_verifier, traced), no code is redeemed without PKCE."""
    name = f"nk{tenant.org.id[:8]}"
    provision(db, tenant, f"{name}@acme.com")
    iam.user(name, f"{name}@acme.com", "correct horse")
    conn = oidc_connection(db, tenant, iam)
    browser = sso_app.test_client()
    authorize = start_login(browser, conn)
    with db.transaction() as s:  # as if sealed under a key this app no longer has
        s.connection().exec_driver_sql(
            "UPDATE oidc_login_requests SET code_verifier = '"
            + sealer(PKCE_VERIFIER, "z" * 40).seal("v" * 64) + "'")
    resp = browser.get(roster_path(iam.sign_in(authorize, name, "correct horse")))
    assert resp.status_code == 403, resp.text
    assert [r.reason for r in rows(db, "SELECT reason FROM sso_login_traces")] == [
        "missing_pkce_verifier"]
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 0


def test_a_logout_by_the_hint_alone_leaves_no_id_token_of_the_idp(db, tenant, iam, web,
                                                                  sso_app):
    """The portal's back end ends the login from a browser without Roster's cookie: the
    login's sealed IdP ID token goes with it (it stayed, sealed, until the purge a month
    after the session ended)."""
    _conn, tokens, _browser = _canaille_login(db, tenant, iam, web, "hint")
    resp = sso_app.test_client().get(END, query_string={"id_token_hint": tokens["id_token"]})
    assert resp.status_code == 200, resp.text
    assert [(r.revoked_reason, r.upstream_id_token) for r in rows(
        db, "SELECT revoked_reason, upstream_id_token FROM login_sessions")] == [
        ("oidc_rp_logout", None)]


def test_the_purge_clears_the_id_token_of_an_expired_login_and_keeps_the_row(
        db, tenant, iam, web, database_url):
    """A login past its expiry is no longer live: `roster sso purge-traces` clears its
    sealed IdP ID token now (not with the row, a month later); a live login keeps its own."""
    _canaille_login(db, tenant, iam, web, "exp")
    [expired] = rows(db, "SELECT id FROM login_sessions")
    _canaille_login(db, tenant, iam, web, "live")
    with db.transaction() as s:
        s.get(LoginSession, expired.id).expires_at = utcnow() - timedelta(minutes=1)
    env = {"ROSTER_DATABASE__URL": database_url, "ROSTER_APP__ENV": "test",
           "ROSTER_APP__SECRET_KEY": SECRET_KEY}
    result = CliRunner().invoke(cli, ["sso", "purge-traces"], env=env)
    assert result.exit_code == 0, result.output
    left = {r.id: r.upstream_id_token for r in rows(
        db, "SELECT id, upstream_id_token FROM login_sessions")}
    assert len(left) == 2
    assert left.pop(expired.id) is None
    assert sealer(UPSTREAM_ID_TOKEN, SECRET_KEY).open(left.popitem()[1])
