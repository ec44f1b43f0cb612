"""/api/v1 connection management: SAML from metadata XML or an https URL, OIDC against a
real IdP (pytest-iam), update, disable, delete, domains; permissions, tenancy, problems."""

from __future__ import annotations

import json

import pytest

from app.sso.oidc_config import decrypt_client_secret
from tests.api.conftest import make_key
from tests.api.test_frame import assert_problem
from tests.conftest import rows
from tests.sso import forge
from tests.sso.conftest import PORTAL, provision
from tests.sso.lockprobe import can_write
from tests.sso.oidc_idp import SECRET_KEY, roster_path, start_login
from tests.sso.test_metadata_url import https_metadata  # noqa: F401  (fixture)


def _base(tenant) -> str:
    return f"/api/v1/orgs/{tenant.org.id}/connections"


def _actions(db) -> list[str]:
    return [r.action for r in rows(db, "SELECT action FROM audit_events WHERE action LIKE "
                                       "'sso:%' ORDER BY seq")]


@pytest.fixture
def admin(db, tenant):
    """The tenant's admin key."""
    return make_key(db, "admin", tenant.org)


@pytest.fixture
def operator(db):
    """The deployment operator's key."""
    return make_key(db, "operator")


def test_admin_creates_a_saml_connection_from_metadata_xml(db, tenant, keys, web, admin):
    """201 with the SP URLs to give the IdP, both certificates imported, audited."""
    xml = forge.idp_metadata([keys.idp.cert_b64, keys.idp_second.cert_b64])
    resp = web.post(_base(tenant), headers=admin.headers, json={
        "name": "okta-saml", "protocol": "saml", "metadata_xml": xml,
        "directory": tenant.directory.name, "match_by": "email"})
    assert resp.status_code == 201, resp.text
    body = resp.get_json()
    cid = body["id"]
    assert (body["protocol"], body["certificates"], body["idp_entity_id"], body["directory_id"],
            body["enabled"]) == ("saml", 2, forge.IDP_ENTITY, tenant.directory.id, True)
    assert body["sp"] == {"entity_id": f"http://roster.test/sso/saml/{cid}/metadata",
                          "metadata_url": f"http://roster.test/sso/saml/{cid}/metadata",
                          "acs": f"http://roster.test/sso/saml/{cid}/acs",
                          "slo": f"http://roster.test/sso/saml/{cid}/slo"}
    assert _actions(db) == ["sso:connection:create", "sso:connection:metadata"]
    listed = web.get(_base(tenant), headers=admin.headers).get_json()["items"]
    assert [c["id"] for c in listed] == [cid]
    assert web.get(f"{_base(tenant)}/{cid}", headers=admin.headers).get_json()["name"] == \
        "okta-saml"


def test_domains_are_added_by_admins_and_verified_only_by_the_operator(
        db, tenant, keys, web, admin, operator):
    """An admin may not route a domain; after the operator verifies it, discovery does."""
    xml = forge.idp_metadata([keys.idp.cert_b64])
    cid = web.post(_base(tenant), headers=admin.headers, json={
        "name": "idp", "protocol": "saml", "metadata_xml": xml}).get_json()["id"]
    added = web.post(f"{_base(tenant)}/{cid}/domains", headers=admin.headers,
                     json={"domain": "ACME.com"})
    assert added.status_code == 201, added.text
    assert added.get_json()["domain"] == "acme.com"
    assert added.get_json()["verified"] is False
    verify = f"{_base(tenant)}/{cid}/domains/acme.com/verify"
    assert_problem(web.post(verify, headers=admin.headers), 403, "forbidden")
    assert web.post("/sso/discover", data={"email": "a@acme.com"}).status_code == 404
    done = web.post(verify, headers=operator.headers)
    assert done.status_code == 200, done.text
    assert done.get_json()["verified"] is True
    routed = web.post("/sso/discover", data={"email": "a@acme.com", "next": PORTAL})
    assert routed.headers["Location"].startswith(f"/sso/saml/{cid}/login")
    conn = web.get(f"{_base(tenant)}/{cid}", headers=admin.headers).get_json()
    assert [(d["domain"], d["verified"]) for d in conn["domains"]] == [("acme.com", True)]
    assert_problem(web.post(f"{_base(tenant)}/{cid}/domains", headers=admin.headers,
                            json={"domain": "acme.com"}), 409, "conflict")
    assert_problem(web.post(f"{_base(tenant)}/{cid}/domains", headers=admin.headers,
                            json={"domain": "not a domain"}), 400, "validation")


def test_saml_metadata_from_an_https_url_is_fetched_and_kept(
        db, tenant, keys, web, admin, https_metadata, tmp_path, monkeypatch):  # noqa: F811
    """The URL is fetched over verified TLS (the test CA is trusted as an operator would)."""
    url, body, _context = https_metadata
    # The fixture's certificate is written to this test's tmp_path; trust it process-wide.
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "tls.crt"))
    body["xml"] = forge.idp_metadata([keys.idp.cert_b64])
    resp = web.post(_base(tenant), headers=admin.headers, json={
        "name": "by-url", "protocol": "saml", "metadata_url": url})
    assert resp.status_code == 201, resp.text
    cid = resp.get_json()["id"]
    assert (resp.get_json()["metadata_url"], resp.get_json()["certificates"]) == (url, 1)
    body["xml"] = forge.idp_metadata([keys.idp.cert_b64, keys.idp_second.cert_b64])
    refreshed = web.post(f"{_base(tenant)}/{cid}/metadata/refresh", headers=admin.headers)
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.get_json()["certificates"] == 2


def test_metadata_urls_are_fetched_without_holding_a_write_lock(
        db, tenant, keys, web, admin, https_metadata, tmp_path, monkeypatch):  # noqa: F811
    """Create, refresh and update read the IdP while other requests can still write."""
    url, body, _context = https_metadata
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "tls.crt"))
    body["xml"] = forge.idp_metadata([keys.idp.cert_b64])
    seen: list[bool] = []
    body["on_get"] = lambda: seen.append(
        can_write(db, "UPDATE organizations SET name = name"))
    created = web.post(_base(tenant), headers=admin.headers, json={
        "name": "by-url", "protocol": "saml", "metadata_url": url})
    assert created.status_code == 201, created.text
    cid = created.get_json()["id"]
    web.post(f"{_base(tenant)}/{cid}/domains", headers=admin.headers, json={"domain": "a.com"})
    refreshed = web.post(f"{_base(tenant)}/{cid}/metadata/refresh", headers=admin.headers)
    assert refreshed.status_code == 200, refreshed.text
    patched = web.patch(f"{_base(tenant)}/{cid}", headers=admin.headers,
                        json={"metadata_url": url, "match_by": "nameid"})
    assert patched.status_code == 200, patched.text
    assert seen == [True, True, True]
    assert patched.get_json()["match_by"] == "nameid"
    assert [d["domain"] for d in refreshed.get_json()["domains"]] == ["a.com"]
    assert _actions(db) == ["sso:connection:create", "sso:connection:metadata",
                            "sso:domain:add", "sso:connection:metadata",
                            "sso:connection:update", "sso:connection:metadata"]


def test_an_unreachable_metadata_url_is_a_problem_and_writes_nothing(db, tenant, web, admin):
    """The fetch fails before any write: 400 naming the URL, no connection, no audit."""
    resp = web.post(_base(tenant), headers=admin.headers, json={
        "name": "by-url", "protocol": "saml", "metadata_url": "https://127.0.0.1:9/md"})
    problem = assert_problem(resp, 400, "validation")
    assert "cannot fetch" in problem["detail"]
    assert problem["errors"] == [{"field": "metadata_url", "detail": problem["detail"]}]
    assert rows(db, "SELECT count(*) AS n FROM sso_connections")[0].n == 0
    assert _actions(db) == []


def test_a_metadata_url_token_stays_out_of_problems_and_the_audit(
        db, tenant, keys, web, admin, https_metadata, tmp_path, monkeypatch):  # noqa: F811
    """A metadata URL carrying a token: the problem of a failed fetch and the audit record of
    an import name it with the token masked (the audit is exported and never edited)."""
    resp = web.post(_base(tenant), headers=admin.headers, json={
        "name": "by-url", "protocol": "saml",
        "metadata_url": "https://127.0.0.1:9/md?token=MdT0ken42&app=1"})
    problem = assert_problem(resp, 400, "validation")
    assert "cannot fetch metadata from https://127.0.0.1:9/md?token=***&app=1" in \
        problem["detail"]
    assert "MdT0ken42" not in resp.text
    url, body, _context = https_metadata
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "tls.crt"))
    body["xml"] = forge.idp_metadata([keys.idp.cert_b64])
    resp = web.post(_base(tenant), headers=admin.headers, json={
        "name": "by-url", "protocol": "saml", "metadata_url": f"{url}?token=MdT0ken42"})
    assert resp.status_code == 201, resp.text
    data = [json.loads(r.data) if isinstance(r.data, str) else r.data for r in rows(
        db, "SELECT data FROM audit_events WHERE action = 'sso:connection:metadata'")]
    assert [d["source"] for d in data] == [f"{url}?token=***"]


@pytest.mark.parametrize(("extra", "field"), [
    ({"metadata_xml": "<not-xml"}, "metadata_xml"),
    ({"metadata_xml": "<md:EntityDescriptor xmlns:md='urn:oasis:names:tc:SAML:2.0:metadata'"
                      " entityID='x'/>"}, "metadata_xml"),
    ({"metadata_url": "http://idp.example.com/metadata"}, "metadata_url"),
    ({"metadata_url": "https://a", "metadata_xml": "<x/>"}, "metadata_url"),
    ({"discovery_url": "https://idp.example.com/.well-known/openid-configuration"},
     "discovery_url"),
    ({"protocol": "ldap"}, "protocol"),
    ({"login_policy": "anyone"}, "login_policy"),
    ({"surprise": 1}, "surprise"),
    ({"check_discovery": False}, "check_discovery"),
    ({"entity_id": "https://idp.example.com/entity"}, "entity_id"),
])
def test_bad_saml_input_is_a_problem_and_writes_nothing(db, tenant, web, admin, extra, field):
    """Bad XML, http metadata, mixed or foreign fields: 400 problem, no connection, no audit."""
    resp = web.post(_base(tenant), headers=admin.headers,
                    json={"name": "bad", "protocol": "saml", **extra})
    problem = assert_problem(resp, 400, "validation")
    if field:
        assert field in {e["field"] for e in problem.get("errors", [])}, problem
    assert rows(db, "SELECT count(*) AS n FROM sso_connections")[0].n == 0
    assert _actions(db) == []


@pytest.mark.parametrize(("extra", "field"), [
    ({"check_discovery": True}, "check_discovery"),
    ({"entity_id": "https://idp.example.com/entity"}, "entity_id"),
])
def test_a_field_that_would_be_ignored_in_a_saml_patch_is_a_400(db, tenant, web, admin, extra,
                                                                field):
    """check_discovery (OIDC only) on a SAML connection, and an entity_id without the
    metadata it picks from, were accepted and ignored (200): a 400 naming the field, and
    the rename beside it is not applied."""
    created = web.post(_base(tenant), headers=admin.headers,
                       json={"name": "kept", "protocol": "saml"}).get_json()
    resp = web.patch(f"{_base(tenant)}/{created['id']}", headers=admin.headers,
                     json={"name": "renamed", **extra})
    problem = assert_problem(resp, 400, "validation")
    assert [e["field"] for e in problem["errors"]] == [field]
    assert [r.name for r in rows(db, "SELECT name FROM sso_connections")] == ["kept"]
    assert _actions(db) == ["sso:connection:create"]


def test_unusable_metadata_in_a_patch_names_its_field_and_changes_nothing(db, tenant, web,
                                                                         admin):
    """README: unparsable metadata is a 400 naming the field; the rename beside it in the
    same body is not applied, nor audited."""
    created = web.post(_base(tenant), headers=admin.headers,
                       json={"name": "kept", "protocol": "saml"}).get_json()
    resp = web.patch(f"{_base(tenant)}/{created['id']}", headers=admin.headers,
                     json={"name": "renamed", "metadata_xml": "<not-xml"})
    problem = assert_problem(resp, 400, "validation")
    assert problem["errors"] == [{"field": "metadata_xml", "detail": problem["detail"]}]
    assert [r.name for r in rows(db, "SELECT name FROM sso_connections")] == ["kept"]
    assert _actions(db) == ["sso:connection:create"]


@pytest.mark.parametrize("value", ["0", "false", 0, 1, "yes"])
def test_a_boolean_that_is_not_a_json_boolean_is_a_400(db, tenant, web, admin, value):
    """{"enabled": "0"} was read as false and {"enabled": 1} as true: marshmallow's Boolean
    takes numbers and words. A JSON body's booleans are true or false; the rest is a 400
    naming the field, and nothing changes."""
    created = web.post(_base(tenant), headers=admin.headers,
                       json={"name": "kept", "protocol": "saml"}).get_json()
    for body in ({"enabled": value}, {"name": "renamed", "allow_idp_initiated": value}):
        resp = web.patch(f"{_base(tenant)}/{created['id']}", headers=admin.headers, json=body)
        problem = assert_problem(resp, 400, "validation")
        assert [e["field"] for e in problem["errors"]] == [next(k for k in body
                                                                if k != "name")]
    resp = web.post(_base(tenant), headers=admin.headers,
                    json={"name": "other", "protocol": "saml", "sign_requests": value})
    assert [e["field"] for e in assert_problem(resp, 400, "validation")["errors"]] == [
        "sign_requests"]
    assert [(r.name, r.enabled, r.allow_idp_initiated) for r in rows(
        db, "SELECT name, enabled, allow_idp_initiated FROM sso_connections")] == [
        ("kept", True, False)]
    resp = web.patch(f"{_base(tenant)}/{created['id']}", headers=admin.headers,
                     json={"enabled": False})
    assert resp.get_json()["enabled"] is False


def test_oidc_connection_through_the_api_signs_a_user_in_at_a_real_idp(db, tenant, iam, web,
                                                                      admin):
    """Create, register at canaille, PATCH the client: the secret is encrypted, never shown,
    and an employee signs in through the connection the API made."""
    created = web.post(_base(tenant), headers=admin.headers, json={
        "name": "canaille", "protocol": "oidc", "discovery_url": iam.discovery_url,
        "directory": tenant.directory.id, "algorithms": ["RS512", "ES256"],
        "scopes": "openid email profile groups", "groups_claim": "groups"})
    assert created.status_code == 201, created.text
    conn = created.get_json()
    assert conn["sp"] == {
        "redirect_uri": f"http://roster.test/sso/oidc/{conn['id']}/callback",
        "post_logout_redirect_uri": f"http://roster.test/sso/oidc/{conn['id']}/logged-out"}
    assert (conn["oidc_algorithms"], conn["oidc_client_secret_set"]) == (["RS512", "ES256"],
                                                                        False)
    client_id, secret = iam.client(conn["id"])
    patched = web.patch(f"{_base(tenant)}/{conn['id']}", headers=admin.headers,
                        json={"client_id": client_id, "client_secret": secret})
    assert patched.status_code == 200, patched.text
    assert secret not in patched.text
    assert "client_secret\"" not in patched.text
    assert patched.get_json()["oidc_client_secret_set"] is True
    [stored] = rows(db, "SELECT oidc_client_secret_enc FROM sso_connections")
    assert secret not in stored.oidc_client_secret_enc
    assert decrypt_client_secret(SECRET_KEY, stored.oidc_client_secret_enc) == secret
    audits = rows(db, "SELECT data FROM audit_events WHERE action = 'sso:connection:oidc'")
    assert all(secret not in json.dumps(a.data) for a in audits)
    name = f"api{conn['id'][:8]}"
    provision(db, tenant, f"{name}@acme.com")
    iam.user(name, f"{name}@acme.com", "correct horse")

    class _Conn:
        id = conn["id"]

    callback = iam.sign_in(start_login(web, _Conn), name, "correct horse")
    landed = web.get(roster_path(callback))
    assert landed.status_code == 303, landed.text
    assert landed.headers["Location"] == PORTAL + "home"


@pytest.mark.parametrize(("extra", "field"), [
    ({"algorithms": ["HS256"]}, "algorithms"),
    ({"algorithms": ["none"]}, "algorithms"),
    ({"metadata_xml": "<x/>"}, "metadata_xml"),
    ({"discovery_url": "http://idp.example.com/.well-known/openid-configuration"},
     "discovery_url"),
    ({"scopes": "email profile"}, "scopes"),
])
def test_bad_oidc_input_is_a_problem_and_writes_nothing(db, tenant, web, admin, extra, field):
    """Unknown or unsafe algorithms, SAML fields, http discovery, no openid scope: 400."""
    resp = web.post(_base(tenant), headers=admin.headers,
                    json={"name": "bad", "protocol": "oidc", **extra})
    problem = assert_problem(resp, 400, "validation")
    assert {e["field"].split(".")[0] for e in problem.get("errors", [])} == {field}, problem
    assert rows(db, "SELECT count(*) AS n FROM sso_connections")[0].n == 0


def test_update_disable_enable_and_delete(db, tenant, keys, web, admin):
    """PATCH changes settings; a disabled connection refuses logins; DELETE removes it."""
    xml = forge.idp_metadata([keys.idp.cert_b64])
    cid = web.post(_base(tenant), headers=admin.headers, json={
        "name": "idp", "protocol": "saml", "metadata_xml": xml}).get_json()["id"]
    url = f"{_base(tenant)}/{cid}"
    patched = web.patch(url, headers=admin.headers, json={
        "login_policy": "jit", "directory": tenant.directory.id, "allow_idp_initiated": True})
    assert patched.status_code == 200, patched.text
    body = patched.get_json()
    assert (body["login_policy"], body["directory_id"], body["allow_idp_initiated"]) == (
        "jit", tenant.directory.id, True)
    assert_problem(web.patch(url, headers=admin.headers, json={"directory": "nope"}), 404,
                   "not-found")
    disabled = web.post(f"{url}/disable", headers=admin.headers)
    assert disabled.get_json()["enabled"] is False
    assert web.get(f"/sso/saml/{cid}/login").status_code == 403  # traced
    assert web.post(f"{url}/enable", headers=admin.headers).get_json()["enabled"] is True
    assert web.get(f"/sso/saml/{cid}/login").status_code == 303
    gone = web.delete(url, headers=admin.headers)
    assert gone.status_code == 204
    assert rows(db, "SELECT count(*) AS n FROM sso_connections")[0].n == 0
    assert web.get(url, headers=admin.headers).status_code == 404
    assert _actions(db) == ["sso:connection:create", "sso:connection:metadata",
                            "sso:connection:update", "sso:connection:update",
                            "sso:connection:update", "sso:connection:delete"]


def test_other_organizations_and_read_only_roles_cannot_touch_a_connection(
        db, tenant, other_tenant, keys, web, admin):
    """Another org's admin gets 404 everywhere; auditors and the portal get 403."""
    xml = forge.idp_metadata([keys.idp.cert_b64])
    cid = web.post(_base(tenant), headers=admin.headers, json={
        "name": "idp", "protocol": "saml", "metadata_xml": xml}).get_json()["id"]
    stranger = make_key(db, "admin", other_tenant.org)
    url = f"{_base(tenant)}/{cid}"
    for method, path, body in (("GET", url, None), ("PATCH", url, {"enabled": False}),
                               ("DELETE", url, None), ("POST", f"{url}/disable", None),
                               ("POST", f"{url}/domains", {"domain": "acme.com"})):
        resp = web.open(path, method=method, headers=stranger.headers, json=body)
        assert_problem(resp, 404, "not-found")
        # Their own org's URL with our connection id is a 404 too.
        own = path.replace(tenant.org.id, other_tenant.org.id)
        assert_problem(web.open(own, method=method, headers=stranger.headers, json=body),
                       404, "not-found")
    for role in ("auditor", "portal"):
        key = make_key(db, role, tenant.org)
        assert_problem(web.patch(url, headers=key.headers, json={"enabled": False}), 403,
                       "forbidden")
    assert rows(db, "SELECT enabled FROM sso_connections")[0].enabled in (True, 1)
