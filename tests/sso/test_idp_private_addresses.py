"""``sso.idp_private_addresses = false`` (the default): a customer admin's IdP URLs cannot
make Roster fetch from loopback, private, link-local (cloud metadata) or other addresses
that are not public (OWASP server-side request forgery), at connection create and update,
at metadata refresh, and at login; refusals say so without the OS's words, store nothing
and never make a 500."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from app import create_app
from app.cli import cli
from app.cli.commands import register
from app.models import Organization
from app.sso.connection_metadata import refresh_due
from app.sso.connections import create_connection
from app.sso.idp_fetch import NO_CONNECTION, NOT_PUBLIC
from app.sso.oidc_rp import Provider, ProviderCache, exchange_code
from app.sso.outcome import LoginFailed
from tests.api.conftest import make_key
from tests.api.test_frame import assert_problem
from tests.conftest import OPERATOR, rows
from tests.sso import forge
from tests.sso.conftest import sso_overrides
from tests.sso.oidc_idp import oidc_connection, refused_with
from tests.sso.test_metadata_url import https_metadata  # noqa: F401  (fixture)

register()

# Each names an address that is not public; none is ever connected to.
REFUSED_HOSTS = ["127.0.0.1:{port}", "10.0.0.1", "169.254.169.254", "[::1]:{port}",
                 "[::ffff:127.0.0.1]:{port}", "localhost:{port}", "100.64.0.1",
                 "[fd00::1]", "172.16.0.1", "192.168.0.1", "0.0.0.0:{port}"]


@pytest.fixture(scope="module")
def public_only_app(database_url, keys, db):
    """The SSO app with the default ``sso.idp_private_addresses = false``."""
    overrides = sso_overrides(database_url, keys)
    overrides["sso"] = {**overrides["sso"], "idp_private_addresses": False}
    app = create_app(overrides)
    app.extensions["roster.db"].dispose()
    app.extensions["roster.db"] = db
    return app


@pytest.fixture
def strict(public_only_app):
    """A client of that app; its IdP documents read afresh in each test."""
    public_only_app.extensions.pop("roster.oidc_providers", None)
    return public_only_app.test_client()


@pytest.fixture
def admin(db, tenant):
    """The tenant's customer-admin key (connections:write)."""
    return make_key(db, "admin", tenant.org)


def _base(tenant) -> str:
    return f"/api/v1/orgs/{tenant.org.id}/connections"


def _refused(resp, field: str) -> None:
    problem = assert_problem(resp, 400, "validation")
    assert NOT_PUBLIC in problem["detail"], problem
    assert problem["errors"] == [{"field": field, "detail": problem["detail"]}]
    for leak in ("Errno", "refused", "resolves", "getaddrinfo", "timed out"):
        assert leak not in problem["detail"], problem


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_a_metadata_url_that_is_not_public_is_refused_at_create_and_update(
        db, tenant, keys, strict, admin, https_metadata, host):  # noqa: F811
    """SAML ``metadata_url`` on create and on PATCH: 400 naming the field, no GET reached
    the server, no connection stored, the connection's URL unchanged."""
    url, body, _context = https_metadata
    port = url.split(":")[2].split("/")[0]
    body["xml"] = forge.idp_metadata([keys.idp.cert_b64])
    gets: list[str] = []
    body["on_get"] = lambda: gets.append("GET")
    target = f"https://{host.format(port=port)}/metadata"
    _refused(strict.post(_base(tenant), headers=admin.headers, json={
        "name": "ssrf", "protocol": "saml", "metadata_url": target}), "metadata_url")
    assert rows(db, "SELECT count(*) AS n FROM sso_connections")[0].n == 0
    made = strict.post(_base(tenant), headers=admin.headers, json={
        "name": "xml", "protocol": "saml", "metadata_xml": body["xml"]})
    assert made.status_code == 201, made.text
    _refused(strict.patch(f"{_base(tenant)}/{made.get_json()['id']}", headers=admin.headers,
                          json={"metadata_url": target}), "metadata_url")
    assert rows(db, "SELECT metadata_url FROM sso_connections")[0].metadata_url is None
    assert gets == []


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_a_discovery_url_that_is_not_public_is_refused_at_create_and_update(
        db, tenant, strict, admin, hostile, host):
    """OIDC ``discovery_url`` on create and on PATCH (check_discovery): 400 naming the
    field, the IdP never asked, nothing stored; also with ``check_discovery: false``
    (the URL is not read, but its host is looked at)."""
    asked: list[str] = []
    hostile.on_request = asked.append
    target = (f"https://{host.format(port=hostile.port)}/.well-known/openid-configuration")
    for check in (True, False):  # refused even when it is not read at once
        _refused(strict.post(_base(tenant), headers=admin.headers, json={
            "name": "ssrf", "protocol": "oidc", "discovery_url": target,
            "check_discovery": check}), "discovery_url")
    assert rows(db, "SELECT count(*) AS n FROM sso_connections")[0].n == 0
    made = strict.post(_base(tenant), headers=admin.headers, json={
        "name": "later", "protocol": "oidc"})
    assert made.status_code == 201, made.text
    for check in (True, False):
        _refused(strict.patch(f"{_base(tenant)}/{made.get_json()['id']}",
                              headers=admin.headers,
                              json={"discovery_url": target, "check_discovery": check}),
                 "discovery_url")
    assert rows(db, "SELECT oidc_discovery_url FROM sso_connections")[0].oidc_discovery_url \
        is None
    assert asked == []


def test_a_name_that_does_not_resolve_is_told_without_the_resolvers_words(
        db, tenant, strict, admin):
    """A failed connection to a host is "could not fetch", not the OS's error text."""
    resp = strict.post(_base(tenant), headers=admin.headers, json={
        "name": "gone", "protocol": "oidc",
        "discovery_url": "https://no-such-idp.invalid/.well-known/openid-configuration"})
    problem = assert_problem(resp, 400, "validation")
    assert NO_CONNECTION in problem["detail"], problem
    assert "Name or service" not in problem["detail"]
    assert "Errno" not in problem["detail"]
    assert rows(db, "SELECT count(*) AS n FROM sso_connections")[0].n == 0


def test_a_stored_metadata_url_is_refused_at_refresh(db, tenant, keys, strict, admin,
                                                     https_metadata):  # noqa: F811
    """A metadata URL stored while the setting was on: the API's refresh is a 400, the
    worker's refresh reports it, and neither fetches it."""
    url, body, _context = https_metadata
    body["xml"] = forge.idp_metadata([keys.idp.cert_b64])
    gets: list[str] = []
    body["on_get"] = lambda: gets.append("GET")
    with db.transaction() as s:
        conn = create_connection(s, s.get(Organization, tenant.org.id), "old", "saml",
                                 OPERATOR)
        conn.metadata_url = url
        cid = conn.id
    resp = strict.post(f"{_base(tenant)}/{cid}/metadata/refresh", headers=admin.headers)
    assert NOT_PUBLIC in assert_problem(resp, 400, "validation")["detail"]
    outcomes = list(refresh_due(db, timedelta(hours=1), OPERATOR, private_ok=False))
    assert [(c, NOT_PUBLIC in o.detail) for c, o in outcomes] == [(cid, True)]
    assert gets == []
    assert rows(db, "SELECT idp_certs FROM sso_connections")[0].idp_certs in ([], "[]")


def test_the_cli_is_held_to_the_setting_too(database_url, db, tenant, keys,
                                            https_metadata):  # noqa: F811
    """`roster connection metadata import --url` with the setting off: one line, exit 1,
    nothing fetched or stored; on, the import works."""
    url, body, _context = https_metadata
    body["xml"] = forge.idp_metadata([keys.idp.cert_b64])
    gets: list[str] = []
    body["on_get"] = lambda: gets.append("GET")
    with db.transaction() as s:
        cid = create_connection(s, s.get(Organization, tenant.org.id), "cli", "saml",
                                OPERATOR).id
    env = {"ROSTER_DATABASE__URL": database_url, "ROSTER_SSO__IDP_PRIVATE_ADDRESSES": "false"}
    result = CliRunner().invoke(cli, ["connection", "metadata", "import", cid, "--url", url],
                                env=env)
    assert result.exit_code == 1, result.output
    assert NOT_PUBLIC in result.output
    assert "Traceback" not in result.output
    assert gets == []
    assert rows(db, "SELECT metadata_url FROM sso_connections")[0].metadata_url is None


@pytest.mark.parametrize("check", ["--check", "--no-check"])
def test_the_cli_refuses_a_discovery_url_that_is_not_public(database_url, db, tenant, hostile,
                                                             check):
    """`roster connection oidc --discovery-url` with the setting off: one line naming the
    field, exit 1, the IdP never asked and nothing stored, whether it is read or not."""
    asked: list[str] = []
    hostile.on_request = asked.append
    with db.transaction() as s:
        cid = create_connection(s, s.get(Organization, tenant.org.id), "cli-oidc", "oidc",
                                OPERATOR).id
    env = {"ROSTER_DATABASE__URL": database_url, "ROSTER_SSO__IDP_PRIVATE_ADDRESSES": "false",
           "ROSTER_APP__SECRET_KEY": "t" * 40}
    result = CliRunner().invoke(cli, ["connection", "oidc", cid, "--discovery-url",
                                      hostile.discovery_url, check], env=env)
    assert result.exit_code == 1, result.output
    assert f"discovery_url: {NOT_PUBLIC}" in result.output
    assert "Traceback" not in result.output
    assert asked == []
    assert rows(db, "SELECT oidc_discovery_url FROM sso_connections")[0].oidc_discovery_url \
        is None


def test_a_login_whose_discovery_is_not_public_is_refused_with_a_trace(db, tenant, hostile,
                                                                       strict):
    """An OIDC connection stored with a loopback IdP: the login is a refusal page traced
    ``idp_not_public`` (not a 500), and the IdP is never asked."""
    asked: list[str] = []
    hostile.on_request = asked.append
    conn = oidc_connection(db, tenant, hostile)
    resp = strict.get(f"/sso/oidc/{conn.id}/login")
    payload = refused_with(db, resp, "idp_not_public")
    assert asked == []
    assert "Errno" not in str(payload)


def test_the_jwks_and_the_token_endpoint_are_held_to_public_addresses(hostile):
    """The endpoints a discovery document names are checked as they are fetched: the JWKS
    read and the code exchange of an IdP whose document sends them to loopback are refused
    (``idp_not_public``) before any request reaches it."""
    doc = hostile.document()
    provider = Provider.of(hostile.discovery_url, doc)
    asked: list[str] = []
    hostile.on_request = asked.append
    with pytest.raises(LoginFailed) as jwks:
        ProviderCache(private_ok=False).jwks(provider.jwks_uri)
    with pytest.raises(LoginFailed) as token:
        exchange_code(provider, "client", "secret", "https://roster.test/cb", "code",
                      "verifier" * 8, private_ok=False)
    for refused in (jwks.value, token.value):
        assert refused.reason == "idp_not_public"
        assert NOT_PUBLIC in refused.detail
    assert asked == []
    assert hostile.token_requests == []


def _name_resolving_privately() -> str:
    """A host name (not ``localhost``) the system resolver answers with addresses that are
    not public, from /etc/hosts: the machine's own name, or Debian's ip6-localhost."""
    import socket

    from app.public_address import is_public

    for name in (socket.gethostname(), "ip6-localhost", "ip6-loopback"):
        try:
            found = {info[4][0] for info in socket.getaddrinfo(name, 443, 0,
                                                               socket.SOCK_STREAM)}
        except OSError:
            continue
        if found and not any(is_public(str(address)) for address in found):
            return name
    pytest.skip("no host name here resolves to a private address only")


def test_a_name_resolving_privately_is_told_as_a_name_that_does_not_resolve(
        db, tenant, strict, admin):
    """A customer admin tried names and read the answers: "the IdP address is not public"
    for a name that resolves to a private address, "could not fetch it" for one that does
    not resolve (and, not reading the URL, 400 against 201): a map of the names inside
    Roster's network (a database's, a Kubernetes service's). A name now gets the same
    answer either way (the server log tells the operator which); an address written as
    such is still told not public, which says nothing the admin did not write."""
    private = _name_resolving_privately()

    def answer(host: str, protocol: str, **extra: object) -> tuple[int, str]:
        field = "discovery_url" if protocol == "oidc" else "metadata_url"
        path = "/.well-known/openid-configuration" if protocol == "oidc" else "/metadata"
        resp = strict.post(_base(tenant), headers=admin.headers, json={
            "name": f"probe-{len(extra)}-{protocol}", "protocol": protocol,
            field: f"https://{host}{path}", **extra})
        if resp.status_code == 201:  # stored, not read (its id and times its own)
            strict.delete(f"{_base(tenant)}/{resp.get_json()['id']}", headers=admin.headers)
            return 201, "stored"
        body = {k: v for k, v in (resp.get_json() or {}).items() if k != "request_id"}
        return resp.status_code, json.dumps(body, sort_keys=True).replace(host, "HOST")

    for protocol, extra in (("oidc", {}), ("oidc", {"check_discovery": False}),
                            ("saml", {})):
        told = answer(private, protocol, **extra)
        assert told == answer("no-such-idp.invalid", protocol, **extra), (protocol, extra)
        assert NOT_PUBLIC not in told[1]
    assert NOT_PUBLIC in answer("10.0.0.1", "oidc")[1]
