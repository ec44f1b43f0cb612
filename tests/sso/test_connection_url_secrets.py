"""Credentials in an SSO connection's IdP URLs (a SAML ``metadata_url``, an OIDC
``discovery_url``): kept as given, so fetches still work, but shown masked like a webhook
URL's (app/events/endpoints.py) in the API, the CLI, problems and audit records."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register
from tests.api.conftest import make_key
from tests.api.test_frame import assert_problem
from tests.conftest import rows
from tests.sso import forge
from tests.sso.test_metadata_url import https_metadata  # noqa: F401  (fixture)

register()

# Userinfo, a credential-named query value and an opaque one: none may be shown.
SECRETS = ("alice", "Pa55wordX", "DiscT0ken42", "Zq8mK2vP9xW4rT7yL3nB")
DISCOVERY = ("https://alice:Pa55wordX@idp.example/.well-known/openid-configuration"
             "?token=DiscT0ken42&tenant=Zq8mK2vP9xW4rT7yL3nB&lang=en")
SHOWN = ("https://***@idp.example/.well-known/openid-configuration?token=***"
         "&tenant=***")


def _base(tenant) -> str:
    return f"/api/v1/orgs/{tenant.org.id}/connections"


def _clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, (secret, text)


def _audit(db, action: str) -> list[str]:
    return [json.dumps(r.data) if not isinstance(r.data, str) else r.data for r in rows(
        db, "SELECT data FROM audit_events WHERE action = :a ORDER BY seq", a=action)]


@pytest.fixture
def admin(db, tenant):
    """The tenant's admin key."""
    return make_key(db, "admin", tenant.org)


def test_a_discovery_url_is_stored_whole_and_shown_masked(db, tenant, web, admin):
    """Create, GET, list, PATCH and delete name the discovery URL with its userinfo and
    secret query values masked (an opaque value with a fingerprint); the row keeps it."""
    resp = web.post(_base(tenant), headers=admin.headers, json={
        "name": "oidc", "protocol": "oidc", "discovery_url": DISCOVERY,
        "check_discovery": False})
    assert resp.status_code == 201, resp.text
    _clean(resp.text)
    shown = resp.get_json()["oidc_discovery_url"]
    assert shown.startswith(SHOWN), shown
    assert shown.endswith("&lang=en"), shown
    cid = resp.get_json()["id"]
    assert rows(db, "SELECT oidc_discovery_url FROM sso_connections")[0].oidc_discovery_url \
        == DISCOVERY
    one = web.get(f"{_base(tenant)}/{cid}", headers=admin.headers)
    listed = web.get(_base(tenant), headers=admin.headers)
    patched = web.patch(f"{_base(tenant)}/{cid}", headers=admin.headers,
                        json={"discovery_url": DISCOVERY, "check_discovery": False})
    for answer in (one, listed, patched):
        assert answer.status_code == 200, answer.text
        _clean(answer.text)
        assert shown in answer.text
    assert web.delete(f"{_base(tenant)}/{cid}", headers=admin.headers).status_code == 204
    audited = _audit(db, "sso:connection:oidc") + _audit(db, "sso:connection:delete")
    assert len(audited) == 3
    for data in audited:
        _clean(data)
        assert shown in data


def test_an_unreachable_discovery_url_is_a_problem_without_its_secrets(db, tenant, web,
                                                                       admin):
    """check_discovery reads the URL at once: its failure names the URL masked."""
    url = DISCOVERY.replace("idp.example", "127.0.0.1:9")
    resp = web.post(_base(tenant), headers=admin.headers, json={
        "name": "oidc", "protocol": "oidc", "discovery_url": url})
    problem = assert_problem(resp, 400, "validation")
    _clean(resp.text)
    assert "https://***@127.0.0.1:9/.well-known/openid-configuration?token=***" in \
        problem["detail"], problem
    assert rows(db, "SELECT count(*) AS n FROM sso_connections")[0].n == 0


def test_a_metadata_url_is_shown_masked(db, tenant, keys, web, admin,
                                        https_metadata, tmp_path, monkeypatch):  # noqa: F811
    """A SAML metadata URL with a token: fetched with it, stored with it, shown without."""
    url, body, _context = https_metadata
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "tls.crt"))
    body["xml"] = forge.idp_metadata([keys.idp.cert_b64])
    given = f"{url}?sig=DiscT0ken42&app=1"
    resp = web.post(_base(tenant), headers=admin.headers, json={
        "name": "by-url", "protocol": "saml", "metadata_url": given})
    assert resp.status_code == 201, resp.text
    _clean(resp.text)
    assert resp.get_json()["metadata_url"] == f"{url}?sig=***&app=1"
    cid = resp.get_json()["id"]
    refreshed = web.post(f"{_base(tenant)}/{cid}/metadata/refresh", headers=admin.headers)
    assert refreshed.status_code == 200, refreshed.text
    _clean(refreshed.text)
    assert rows(db, "SELECT metadata_url FROM sso_connections")[0].metadata_url == given
    for data in _audit(db, "sso:connection:create") + _audit(db, "sso:connection:metadata"):
        _clean(data)


def test_the_cli_shows_a_discovery_url_masked(database_url, db, tenant):
    """`roster connection oidc` and `list` print no credential of the discovery URL, and
    its audit record holds none; the URL is stored whole."""
    runner = CliRunner()
    env = {"ROSTER_DATABASE__URL": database_url, "ROSTER_APP__SECRET_KEY": "k" * 40}

    def run(*args: str) -> str:
        result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    out = run("connection", "create", "--org", "acme", "--name", "o", "--protocol", "oidc")
    cid = out.split("(id ")[1].split(")")[0]
    _clean(run("connection", "oidc", cid, "--discovery-url", DISCOVERY, "--no-check"))
    listing = run("connection", "list", "--org", "acme")
    _clean(listing)
    assert "https://***@idp.example/" in listing
    for data in _audit(db, "sso:connection:oidc"):
        _clean(data)
    assert rows(db, "SELECT oidc_discovery_url FROM sso_connections")[0].oidc_discovery_url \
        == DISCOVERY


@pytest.mark.parametrize(("protocol", "field", "url"), [
    ("oidc", "discovery_url", SHOWN + "&lang=en"),
    ("saml", "metadata_url", "https://idp.example/md?token=***"),
])
def test_a_url_as_shown_is_refused_back(db, tenant, web, admin, protocol, field, url):
    """A URL copied from a response (its credentials ***) would be stored useless: 400."""
    extra = {"check_discovery": False} if protocol == "oidc" else {}
    resp = web.post(_base(tenant), headers=admin.headers, json={
        "name": "copied", "protocol": protocol, field: url, **extra})
    problem = assert_problem(resp, 400, "validation")
    assert "masked" in problem["detail"], problem
    assert [e["field"] for e in problem["errors"]] == [field], problem
    assert rows(db, "SELECT count(*) AS n FROM sso_connections")[0].n == 0
