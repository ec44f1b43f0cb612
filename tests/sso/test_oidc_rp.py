"""OIDC relying party: complete logins through pytest-iam (canaille), policies, config, CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner
from joserfc.jwk import RSAKey

from app.cli import cli
from app.cli.commands import register
from app.db import utcnow
from app.directory.organizations import add_unit
from app.errors import InvalidInput
from app.mapping.preview import apply_ruleset
from app.mapping.ruleset import parse_document
from app.models import Organization
from app.models.directory import UserStatus
from app.models.sso import ConnectionDomain, SsoConnection
from app.sso.oidc_config import DEFAULT_ALGORITHMS, configure_oidc, decrypt_client_secret
from app.sso.oidc_rp import Provider
from app.sso.oidc_token import asserted_identity, candidate_keys
from app.sso.outcome import LoginFailed
from app.sso.sealed import PKCE_VERIFIER, sealer
from tests.conftest import OPERATOR, rows
from tests.sso.conftest import provision
from tests.sso.oidc_idp import (
    PORTAL,
    SECRET_KEY,
    follow_to_roster,
    oidc_connection,
    refused_with,
    roster_path,
    start_login,
)

register()


def _login(web, iam, conn, user_name: str, password: str = "correct horse"):
    """Roster login -> IdP login, password, consent -> Roster callback; Roster's answer."""
    callback = iam.sign_in(start_login(web, conn), user_name, password)
    return web.get(roster_path(callback))


def _unique(prefix: str) -> str:
    return f"{prefix}{utcnow().timestamp():.6f}".replace(".", "")


def test_scim_authoritative_login_through_a_real_idp(db, tenant, iam, web):
    """A provisioned, active user signs in at canaille and lands on the portal with a session."""
    name = _unique("alice")
    user = provision(db, tenant, f"{name}@acme.com")
    iam.user(name, f"{name}@acme.com", "correct horse")
    conn = oidc_connection(db, tenant, iam)
    resp = _login(web, iam, conn, name)
    assert resp.status_code == 303, resp.text
    assert resp.headers["Location"] == PORTAL + "home"
    sessions = rows(db, "SELECT user_id, connection_id FROM login_sessions")
    assert [(s.user_id, s.connection_id) for s in sessions] == [(user.id, conn.id)]
    [audit] = rows(db, "SELECT subject_id, data FROM audit_events WHERE action = 'sso:login'")
    data = audit.data if isinstance(audit.data, dict) else json.loads(audit.data)
    assert (audit.subject_id, data["protocol"], data["issuer"]) == (user.id, "oidc", iam.issuer)
    [attempt] = rows(db, "SELECT used_at, code_verifier FROM oidc_login_requests")
    assert attempt.used_at is not None
    assert attempt.code_verifier is None
    assert rows(db, "SELECT count(*) AS n FROM sso_login_traces")[0].n == 0


def test_jit_login_creates_the_user_and_maps_the_groups_claim(db, tenant, iam, web):
    """JIT: the ID token's groups become memberships and the mapping grants the rule's role."""
    with db.transaction() as s:
        org = s.get(Organization, tenant.org.id)
        add_unit(s, org, "Purchasing", "department", None, OPERATOR)
        apply_ruleset(s, org, parse_document({"rules": [
            {"id": "idp-buyers", "priority": 10, "role": "buyer", "unit": "Purchasing",
             "match": {"group": "oidc-buyers"}}]}), OPERATOR, max_loss_share=1.0, force=True)
    name = _unique("jit")
    iam.user(name, f"{name}@acme.com", "correct horse", groups=("oidc-buyers",))
    conn = oidc_connection(db, tenant, iam, policy="jit")
    assert _login(web, iam, conn, name).status_code == 303
    [user] = rows(db, "SELECT id, user_name, primary_email, given_name FROM users")
    # canaille sends no preferred_username: the userName falls back to the email.
    assert (user.user_name, user.primary_email, user.given_name) == (
        f"{name}@acme.com", f"{name}@acme.com", "Alice")
    groups = rows(db, "SELECT g.display_name FROM groups g JOIN memberships m "
                      "ON m.group_id = g.id WHERE m.user_id = :u", u=user.id)
    assert [g.display_name for g in groups] == ["oidc-buyers"]
    grants = rows(db, "SELECT roles.key, units.path, grants.source FROM grants "
                      "JOIN roles ON roles.id = grants.role_id "
                      "JOIN units ON units.id = grants.unit_id WHERE grants.user_id = :u",
                  u=user.id)
    assert [(g.key, g.path, g.source) for g in grants] == [
        ("buyer", "Purchasing", "rule:idp-buyers")]


@pytest.mark.parametrize("status", [UserStatus.deprovisioned, UserStatus.deleted])
def test_deprovisioned_user_is_refused_after_a_valid_idp_login(db, tenant, iam, web, status):
    """The IdP still says yes, Roster says no: plain page, sso:login:denied, traced."""
    name = _unique("gone")
    user = provision(db, tenant, f"{name}@acme.com", status=status)
    iam.user(name, f"{name}@acme.com", "correct horse")
    conn = oidc_connection(db, tenant, iam, policy="jit")
    resp = _login(web, iam, conn, name)
    assert "deactivated" in resp.text
    payload = refused_with(db, resp, "user_deprovisioned")
    assert payload["id_token"]["header"]["alg"] == "RS512"
    assert payload["id_token"]["claims"]["email"] == f"{name[0]}***@acme.com"
    denied = rows(db, "SELECT subject_id FROM audit_events WHERE action = 'sso:login:denied'")
    assert [d.subject_id for d in denied] == [user.id]
    assert rows(db, "SELECT status FROM users")[0].status == status.value


def test_the_authorization_request_carries_state_nonce_and_pkce_s256(db, tenant, iam, web):
    """code flow, S256 challenge of the verifier, nonce; only the state's hash is kept, and
    the verifier sealed with app.secret_key."""
    conn = oidc_connection(db, tenant, iam)
    location = urlsplit(start_login(web, conn))
    assert f"{location.scheme}://{location.netloc}" == iam.issuer
    params = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert params["response_type"] == "code"
    assert params["code_challenge_method"] == "S256"
    assert params["redirect_uri"] == f"http://roster.test/sso/oidc/{conn.id}/callback"
    assert params["scope"] == "openid email profile groups"
    [row] = rows(db, "SELECT id, nonce, code_verifier, redirect_to FROM oidc_login_requests")
    assert row.id == hashlib.sha256(params["state"].encode()).hexdigest()
    assert (row.nonce, row.redirect_to) == (params["nonce"], PORTAL + "home")
    # The verifier is stored sealed (its S256 is not the challenge), and opens with the key.
    assert _s256(row.code_verifier) != params["code_challenge"]
    verifier = sealer(PKCE_VERIFIER, SECRET_KEY).open(row.code_verifier)
    assert verifier is not None
    assert verifier not in row.code_verifier
    assert _s256(verifier) == params["code_challenge"]


def _s256(verifier: str) -> str:
    """The PKCE S256 code challenge of a verifier (RFC 7636 §4.2)."""
    challenge = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(challenge).rstrip(b"=").decode()


def test_es256_tokens_are_accepted_and_a_rotated_key_is_fetched(db, tenant, hostile, web):
    """Not only RS256: ES256 verifies; a new kid makes Roster re-read the JWKS once."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    hostile.token_for = lambda claims: hostile.sign(claims, alg="ES256")
    resp = web.get(roster_path(follow_to_roster(start_login(web, conn))))
    assert resp.status_code == 303, resp.text
    rotated = RSAKey.generate_key(2048, parameters={"kid": _unique("rsa-")})
    hostile.published = [rotated]
    hostile.token_for = lambda claims: hostile.sign(claims, alg="PS256", key=rotated)
    resp = web.get(roster_path(follow_to_roster(start_login(web, conn))))
    assert resp.status_code == 303, resp.text
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 2


def test_home_realm_discovery_routes_to_the_oidc_connection(db, tenant, iam, web):
    """alice@acme.com on a verified domain is sent to her OIDC connection's IdP."""
    conn = oidc_connection(db, tenant, iam)
    with db.transaction() as s:
        s.add(ConnectionDomain(connection_id=conn.id, domain="acme.com", verified_at=utcnow()))
    resp = web.post("/sso/discover", data={"email": "alice@acme.com"})
    assert resp.status_code == 303
    assert f"/{conn.id}/login" in resp.headers["Location"]
    at_idp = urlsplit(web.get(resp.headers["Location"]).headers["Location"])
    assert f"{at_idp.scheme}://{at_idp.netloc}" == iam.issuer
    [client_id] = parse_qs(at_idp.query)["client_id"]
    assert rows(db, "SELECT oidc_client_id FROM sso_connections")[0].oidc_client_id == client_id


def test_client_secret_is_encrypted_at_rest(db, tenant, iam):
    """The stored secret is ciphertext; only the app's secret_key opens it."""
    conn = oidc_connection(db, tenant, iam)
    [row] = rows(db, "SELECT oidc_client_secret_enc FROM sso_connections")
    secret = iam.client(conn.id)[1]
    assert secret not in row.oidc_client_secret_enc
    assert len(decrypt_client_secret(SECRET_KEY, row.oidc_client_secret_enc)) == len(secret)
    with pytest.raises(InvalidInput):
        decrypt_client_secret("another-key-" * 4, row.oidc_client_secret_enc)
    audit = rows(db, "SELECT data FROM audit_events WHERE action = 'sso:connection:oidc'")
    assert secret not in str(audit[0].data)


@pytest.mark.parametrize(("field", "value"), [
    ("algorithms", ["none"]), ("algorithms", ["RS256", "NONE"]), ("algorithms", ["HS256"]),
    ("discovery_url", "http://idp.example.com/.well-known/openid-configuration"),
    ("scopes", "email profile"),
])
def test_unsafe_oidc_settings_are_refused(db, tenant, iam, field, value):
    """alg none, symmetric algs, plain-http IdPs and scopes without openid never get stored."""
    conn = oidc_connection(db, tenant, iam)
    with pytest.raises(InvalidInput), db.transaction() as s:
        configure_oidc(s, s.merge(conn), OPERATOR, secret_key=SECRET_KEY, **{field: value})
    [row] = rows(db, "SELECT oidc_algorithms, oidc_discovery_url FROM sso_connections")
    assert row.oidc_discovery_url == iam.discovery_url


_HTTPS = "https://idp.example.com"


@pytest.mark.parametrize(("doc", "detail"), [
    ({"issuer": "https://other.example.com"}, "does not match the discovery URL"),
    ({"token_endpoint": "http://localhost:8080/token"}, "token_endpoint is not https"),
    ({"jwks_uri": "ftp://idp.example.com/jwks"}, "jwks_uri is not https"),
    ({"authorization_endpoint": None}, "lacks authorization_endpoint"),
])
def test_discovery_documents_are_checked(doc, detail):
    """Issuer must match its URL (Discovery §4.3); endpoints of an https IdP stay https."""
    good = {"issuer": _HTTPS, "authorization_endpoint": f"{_HTTPS}/authorize",
            "token_endpoint": f"{_HTTPS}/token", "jwks_uri": f"{_HTTPS}/jwks"}
    url = f"{_HTTPS}/.well-known/openid-configuration"
    assert Provider.of(url, good).token_endpoint == f"{_HTTPS}/token"
    with pytest.raises(LoginFailed) as refused:
        Provider.of(url, {**good, **doc})
    assert refused.value.reason == "discovery_failed"
    assert detail in refused.value.detail


def test_an_unreachable_idp_is_a_traced_refusal(db, tenant, hostile, web):
    """Discovery failing at login start shows the plain page with a correlation id."""
    conn = oidc_connection(db, tenant, hostile,
                           oidc_discovery_url="http://127.0.0.1:9/.well-known/openid-configuration")
    refused_with(db, web.get(f"/sso/oidc/{conn.id}/login"), "idp_unreachable")


def test_an_idp_error_answer_is_a_traced_refusal(db, tenant, hostile, web):
    """error=access_denied from the IdP: refused, traced, and the code endpoint never called."""
    conn = oidc_connection(db, tenant, hostile)
    state = parse_qs(urlsplit(start_login(web, conn)).query)["state"][0]
    resp = web.get(f"/sso/oidc/{conn.id}/callback", query_string={
        "state": state, "error": "access_denied", "error_description": "user said no"})
    payload = refused_with(db, resp, "idp_error")
    assert payload["callback"]["error"] == "access_denied"
    assert hostile.token_requests == []


_CLAIMS = {"sub": "00u1", "email": "Alice@Acme.com", "preferred_username": "alice",
           "given_name": "Alice", "family_name": "Archer", "groups": ["Buyers", "Buyers", ""]}


@pytest.mark.parametrize(("attribute_map", "extra", "expected"), [
    ({}, {}, {"email": "alice@acme.com", "user_name": "alice", "external_id": "00u1",
              "groups": ("Buyers",)}),
    ({}, {"email_verified": False}, {"email": None}),
    ({}, {"email_verified": "false"}, {"email": None}),  # a string, as some IdPs send it
    ({}, {"email_verified": "FALSE "}, {"email": None}),
    ({}, {"email_verified": "true"}, {"email": "alice@acme.com"}),
    ({"groups": "roles"}, {"roles": "Approvers"}, {"groups": ("Approvers",)}),
    ({"groups": "roles"}, {"roles": {"not": "a list"}}, {"groups": ()}),
    ({"user_name": "upn", "external_id": "oid"}, {"upn": "a@acme.com", "oid": "guid-1"},
     {"user_name": "a@acme.com", "external_id": "guid-1"}),
])
def test_claims_map_to_the_asserted_identity(attribute_map, extra, expected):
    """Standard claims (OIDC Core §5.1), a configurable groups claim and per-connection names."""
    conn = SsoConnection(protocol="oidc", attribute_map=attribute_map)
    who = asserted_identity(conn, {**_CLAIMS, **extra})
    assert (who.subject, who.given_name, who.family_name) == ("00u1", "Alice", "Archer")
    assert {key: getattr(who, key) for key in expected} == expected


def test_a_token_without_kid_uses_the_only_key_of_its_type():
    """No kid: the single RSA signing key is used; with two candidates none is guessed."""
    one, two = (RSAKey.generate_key(2048, parameters={"kid": k}) for k in ("a", "b"))
    jwks = {"keys": [one.as_dict(private=False)]}
    assert [k.kid for k in candidate_keys(jwks, {"alg": "RS256"})] == ["a"]
    both = {"keys": [one.as_dict(private=False), two.as_dict(private=False)]}
    assert candidate_keys(both, {"alg": "RS256"}) == []
    assert [k.kid for k in candidate_keys(both, {"alg": "RS256", "kid": "b"})] == ["b"]


def test_a_key_of_an_unknown_curve_is_skipped_not_a_500():
    """RFC 7517 §5: a JWK the RP does not understand is ignored; the good key still
    verifies. (A P-999 key raised KeyError: a 500 on the callback.) Only a set of which
    no key can be read fails discovery."""
    good = RSAKey.generate_key(2048, parameters={"kid": "a"})
    odd = {"kty": "EC", "crv": "P-999", "x": "AA", "y": "AA", "kid": "odd"}
    jwks = {"keys": [odd, good.as_dict(private=False)]}
    assert [k.kid for k in candidate_keys(jwks, {"alg": "RS256", "kid": "a"})] == ["a"]
    assert [k.kid for k in candidate_keys(jwks, {"alg": "RS256"})] == ["a"]
    with pytest.raises(LoginFailed) as refused:
        candidate_keys({"keys": [odd]}, {"alg": "ES256", "kid": "odd"})
    assert refused.value.reason == "discovery_failed"


def test_default_allow_list_is_not_only_rs256():
    """Real IdPs sign RS256, RS512 (canaille), ES256 and PS256; none is never in it."""
    assert {"RS256", "RS512", "ES256", "PS256"} <= set(DEFAULT_ALGORITHMS)
    assert "none" not in DEFAULT_ALGORITHMS


def test_connection_oidc_cli_configures_and_checks_the_idp(database_url, db, tenant, iam):
    """`roster connection oidc` stores the settings, checks discovery, prints the redirect URI."""
    runner = CliRunner()
    env = {"ROSTER_DATABASE__URL": database_url, "ROSTER_APP__SECRET_KEY": SECRET_KEY}

    def run(*args: str, ok: bool = True, stdin: str | None = None):
        result = runner.invoke(cli, list(args), env=env, input=stdin, catch_exceptions=False)
        assert (result.exit_code == 0) == ok, result.output
        assert "Traceback" not in result.output
        return result.output

    out = run("connection", "create", "--org", "acme", "--name", "canaille",
              "--protocol", "oidc", "--policy", "jit", "--directory", tenant.directory.id)
    conn_id = re.search(r"\(id ([0-9a-f-]{36})\)", out).group(1)
    out = run("connection", "oidc", conn_id, "--discovery-url", iam.discovery_url,
              "--client-id", "roster-cli", "--client-secret-stdin", "--groups-claim", "roles",
              "--algorithms", "RS512,ES256", stdin="cli-secret\n")
    assert f"issuer:        {iam.issuer}" in out
    assert f"/sso/oidc/{conn_id}/callback" in out
    assert "RS512, ES256" in out
    [row] = rows(db, "SELECT oidc_client_id, oidc_client_secret_enc, attribute_map "
                     "FROM sso_connections")
    assert decrypt_client_secret(SECRET_KEY, row.oidc_client_secret_enc) == "cli-secret"
    attribute_map = row.attribute_map if isinstance(row.attribute_map, dict) else json.loads(
        row.attribute_map)
    assert (row.oidc_client_id, attribute_map["groups"]) == ("roster-cli", "roles")
    out = run("connection", "oidc", conn_id, "--algorithms", "none", ok=False)
    assert "alg none is never allowed" in out
    out = run("connection", "oidc", conn_id, "--discovery-url",
              "http://127.0.0.1:9/.well-known/openid-configuration", ok=False)
    assert "IdP not usable (idp_unreachable)" in out


def test_jit_refuses_an_assertion_no_column_can_hold(db, tenant, iam, web):
    """A group claim longer than a group name may be: the login is refused and traced on
    both databases (SQLite would keep it, PostgreSQL fail), and nothing is created."""
    name = _unique("long")
    iam.user(name, f"{name}@acme.com", "correct horse", groups=("g" * 501,))
    conn = oidc_connection(db, tenant, iam, policy="jit")
    resp = _login(web, iam, conn, name)
    refused_with(db, resp, "invalid_attribute")
    assert rows(db, "SELECT count(*) AS n FROM users")[0].n == 0
    assert rows(db, "SELECT count(*) AS n FROM groups")[0].n == 0
