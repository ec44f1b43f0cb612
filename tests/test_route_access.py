"""Every HTTP route Roster serves, read from the app's URL map, against every kind of
credential: none, a garbled one, and each other kind of Roster credential (API key, SCIM
token, a directory's OAuth client and its access token, the portal's OIDC client).

``ACCESS`` names, for each endpoint and method, which credential it takes. A route (or a
method) added without an entry here fails ``test_every_route_has_an_access_entry``. The
/api/v1 routes are declared with their permission through ``api_route``; every role and
another organization's keys are walked for them in tests/api/test_authorization.py, so
here they are checked against the credentials that are not API keys.
"""

from __future__ import annotations

import base64
import functools
import json

import pytest
from flask import Flask

import app.api.views  # noqa: F401  (imports every route module, filling ROUTES)
from app import create_app
from app.api.frame import ROUTES
from app.directory.oauth_clients import create_client
from app.models import Directory
from tests.api.conftest import ORG_ROLES, make_key
from tests.conftest import OPERATOR, Tenant
from tests.sso.conftest import PORTAL_CLIENT, PORTAL_SECRET, keys, sso_app  # noqa: F401

PUBLIC = "public"  # needs no credential, and any sent changes nothing
BROWSER = "browser"  # a browser's or an IdP's leg of a login: state and signatures, no bearer
SCIM = "scim"  # a directory's SCIM token or its OAuth access token
SCIM_CLIENT = "scim-client"  # /oauth/token: a directory's OAuth client (RFC 6749 §4.4)
PORTAL_CLIENT_AUTH = "portal-client"  # the OIDC provider's client-authenticated endpoints
PORTAL_BEARER = "portal-bearer"  # UserInfo: the portal's OIDC access token

ALL = ("DELETE", "GET", "PATCH", "POST", "PUT")
# endpoint -> (what it takes, {method: served}); a SCIM method not served is a 405.
ACCESS: dict[str, tuple[str, dict[str, bool]]] = {
    "ops.healthz": (PUBLIC, {"GET": True}),
    "ops.readyz": (PUBLIC, {"GET": True}),
    "ops.metrics": (PUBLIC, {"GET": True}),
    "static": (PUBLIC, {"GET": True}),
    "api.openapi_json": (PUBLIC, {"GET": True}),
    "sso.login_page": (PUBLIC, {"GET": True}),
    "sso.discover": (PUBLIC, {"POST": True}),
    "sso.discovery": (PUBLIC, {"GET": True}),
    "sso.jwks": (PUBLIC, {"GET": True}),
    "sso.authorize": (BROWSER, {"GET": True}),
    "sso.authorize_post": (BROWSER, {"POST": True}),
    "sso.end_session": (BROWSER, {"GET": True, "POST": True}),
    "sso.oidc_login": (BROWSER, {"GET": True}),
    "sso.oidc_callback": (BROWSER, {"GET": True}),
    "sso.oidc_logged_out": (BROWSER, {"GET": True}),
    "sso.saml_login": (BROWSER, {"GET": True}),
    "sso.saml_acs": (BROWSER, {"POST": True}),
    "sso.saml_logout": (BROWSER, {"GET": True, "POST": True}),
    "sso.saml_slo": (BROWSER, {"GET": True}),
    "sso.saml_metadata": (PUBLIC, {"GET": True}),
    "oauth.token": (SCIM_CLIENT, {"POST": True}),
    "sso.token": (PORTAL_CLIENT_AUTH, {"POST": True}),
    "sso.introspect": (PORTAL_CLIENT_AUTH, {"POST": True}),
    "sso.revoke": (PORTAL_CLIENT_AUTH, {"POST": True}),
    "sso.userinfo": (PORTAL_BEARER, {"GET": True, "POST": True}),
    **{f"scim.{name}": (SCIM, {m: m in served for m in ALL}) for name, served in {
        "service_provider_config": {"GET"}, "resource_types": {"GET"},
        "resource_type": {"GET"}, "schemas": {"GET"}, "schema": {"GET"},
        "me": set(ALL), "me_sub": set(ALL), "users": {"GET", "POST"},
        "users_search": {"POST"}, "user": {"GET", "PUT", "PATCH", "DELETE"},
        "groups": {"GET", "POST"}, "groups_search": {"POST"},
        "group": {"GET", "PUT", "PATCH", "DELETE"}, "root_search": {"POST"}, "bulk": {"POST"},
        "unknown": set(), "unknown_root": set()}.items()},
}

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BODIES = {"PUT": None, "PATCH": {"schemas": [PATCH], "Operations": [
    {"op": "replace", "value": {"active": False}}]}}


# A well-formed request to each client-authenticated endpoint, so that only the client's
# credentials decide the answer.
FORMS = {"/oauth/token": {"grant_type": "client_credentials"},
         "/sso/oidc/token": {"grant_type": "authorization_code", "code": "x",
                             "redirect_uri": "https://portal.test/cb", "code_verifier": "x" * 43},
         "/sso/oidc/introspect": {"token": "x"}, "/sso/oidc/revoke": {"token": "x"}}


def _served_rules(application: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, rule, method) for every rule and method of the URL map."""
    return sorted((r.endpoint, r.rule, m) for r in application.url_map.iter_rules()
                  for m in r.methods or () if m not in ("HEAD", "OPTIONS"))


@pytest.fixture(scope="module")
def rules(sso_app: Flask) -> list[tuple[str, str, str]]:  # noqa: F811
    """The routes of an app with every optional part configured (SSO, OIDC provider)."""
    return _served_rules(sso_app)


def test_every_route_has_an_access_entry(sso_app: Flask, rules) -> None:  # noqa: F811
    """Each endpoint and method the app serves is in ACCESS (or, under /api/v1, declared
    with a permission through api_route), and ACCESS names nothing the app does not serve."""
    missing, served = [], set()
    for endpoint, rule, method in rules:
        if endpoint in ROUTES and ROUTES[endpoint].permission is not None:
            assert method in ROUTES[endpoint].methods, (endpoint, method)
            continue
        served.add((endpoint, method))
        if endpoint not in ACCESS or method not in ACCESS[endpoint][1]:
            missing.append(f"{method} {rule} ({endpoint})")
    assert missing == [], f"say which credential these take in ACCESS: {missing}"
    listed = {(e, m) for e, (_, methods) in ACCESS.items() for m in methods}
    assert listed - served == set()
    assert rules == _served_rules(_probe_app())  # the parametrized cases are these


@pytest.fixture
def creds(db, sso_app: Flask, tenant: Tenant, other_tenant: Tenant) -> dict:  # noqa: F811
    """Every kind of credential: API keys, SCIM tokens, OAuth clients and access tokens."""
    web = sso_app.test_client()
    out: dict = {"tenant": tenant, "other": other_tenant}
    for name, who in (("own", tenant), ("other", other_tenant)):
        with db.transaction() as session:
            client, secret = create_client(session, session.get(Directory, who.directory.id),
                                           OPERATOR)
        token = web.post("/oauth/token", data={
            "grant_type": "client_credentials", "client_id": client.client_id,
            "client_secret": secret}).get_json()["access_token"]
        out[f"{name}_client"] = _basic(client.client_id, secret)
        out[f"{name}_access"] = {"Authorization": f"Bearer {token}"}
    out["operator key"] = make_key(db, "operator").headers
    for role in ORG_ROLES:
        out[f"{role} key"] = make_key(db, role, tenant.org).headers
        out[f"other {role} key"] = make_key(db, role, other_tenant.org).headers
    return out


def _basic(client_id: str, secret: str) -> dict[str, str]:
    """HTTP Basic client authentication (RFC 6749 §2.3.1)."""
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _strangers(creds: dict) -> dict[str, dict[str, str]]:
    """Credentials no endpoint but its own kind's may accept, plus garbled ones."""
    return {"garbled bearer": {"Authorization": "Bearer rk_garbled"},
            "garbled basic": {"Authorization": "Basic Z2FyYmxlZA=="},
            **{name: headers for name, headers in creds.items() if name.endswith(" key")},
            "SCIM token": creds["tenant"].headers, "OAuth access token": creds["own_access"],
            "OAuth client": creds["own_client"],
            "portal client": _basic(PORTAL_CLIENT, PORTAL_SECRET)}


def _url(rule: str) -> str:
    """A URL of ``rule``, each parameter filled with a value that names nothing."""
    return rule.replace("<path:filename>", "roster.css").replace("<path:urn>", USER) \
        .replace("<path:path>", "nothing").replace("<path:rest>", "x") \
        .replace("<name>", "User").replace("<connection_id>", "no-such-connection") \
        .replace("<user_id>", "no-such-user").replace("<group_id>", "no-such-group")


def _open(web, method: str, url: str, headers: dict[str, str], form: bool = False):
    """One request, its body read (streams included) and closed."""
    kwargs = {} if method in ("GET", "DELETE") else (
        {"data": FORMS.get(url, {})} if form else {"json": {}})
    response = web.open(url, method=method, headers=headers, **kwargs)
    response.get_data()
    response.close()
    return response


def _assert_no_tenant_data(response, creds: dict, url: str = "") -> None:
    """Neither organization's ids, slugs nor names appear in an answer to a stranger (but
    for the request's own path, which a problem's ``instance`` repeats)."""
    text = response.get_data(as_text=True).replace(url, "<url>") if url else \
        response.get_data(as_text=True)
    for who in (creds["tenant"], creds["other"]):
        for value in (who.org.id, who.org.slug, who.org.name, who.directory.id):
            assert value not in text, (value, text[:300])


def _cases(kinds: set[str]) -> list[tuple[str, str, str]]:
    """(endpoint, rule, method) of the routes taking one of ``kinds``."""
    return [(e, r, m) for e, r, m in _served_rules(_probe_app()) if e in ACCESS
            and ACCESS[e][0] in kinds]


@functools.cache
def _probe_app() -> Flask:
    """An app for the URL map at collection time (views are registered whatever the
    configuration: tested against the configured app's)."""
    return create_app({"database": {"url": "sqlite://"}, "logging": {"level": "WARNING"}})


NON_API = _cases({PUBLIC, BROWSER, SCIM, SCIM_CLIENT, PORTAL_CLIENT_AUTH, PORTAL_BEARER})


@pytest.mark.parametrize(("endpoint", "rule", "method"), NON_API,
                         ids=[f"{m} {r}" for _, r, m in NON_API])
def test_route_refuses_every_credential_but_its_own(sso_app, creds, endpoint, rule,  # noqa: F811
                                                    method) -> None:
    """No credential and strangers' credentials: the documented 401 (with the scheme's
    challenge) where a credential is needed; the very answer of no credential where none
    is; never a 5xx, never another kind's credential accepted, never tenant data."""
    web = sso_app.test_client()
    kind, served = ACCESS[endpoint][0], ACCESS[endpoint][1][method]
    url, form = _url(rule), kind in (SCIM_CLIENT, PORTAL_CLIENT_AUTH)
    bare = _open(web, method, url, {}, form)
    assert bare.status_code < 500, bare.get_data(as_text=True)
    strangers = _strangers(creds)
    if kind == SCIM:
        own = {"SCIM token", "OAuth access token"}
        if served:
            _assert_challenge(bare, "roster-scim", error=False)
        for name, headers in strangers.items():
            response = _open(web, method, url, headers)
            if name in own:
                assert response.status_code != 401, name
            elif headers["Authorization"].startswith("Bearer"):
                _assert_challenge(response, "roster-scim", error=True)
            else:  # not a bearer credential: the answer of none
                assert response.status_code == bare.status_code, name
            _assert_no_tenant_data(response, creds)
        return
    if kind in (PUBLIC, BROWSER):
        for name, headers in strangers.items():
            response = _open(web, method, url, headers)
            assert response.status_code == bare.status_code, name
            _assert_no_tenant_data(response, creds)
        return
    own_name = {SCIM_CLIENT: "OAuth client", PORTAL_CLIENT_AUTH: "portal client",
                PORTAL_BEARER: None}[kind]
    assert bare.status_code in (400, 401), bare.get_data(as_text=True)
    for name, headers in strangers.items():
        response = _open(web, method, url, headers, form)
        if name == own_name:
            assert response.status_code != 401, name
            continue
        assert response.status_code == 401, (name, response.get_data(as_text=True))
        if kind == PORTAL_BEARER:
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        else:
            assert response.get_json()["error"] == "invalid_client", name
        _assert_no_tenant_data(response, creds)


def _assert_challenge(response, realm: str, *, error: bool) -> None:
    """A 401 with RFC 6750's challenge of ``realm``; ``error``: naming invalid_token."""
    assert response.status_code == 401, response.get_data(as_text=True)
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith(f'Bearer realm="{realm}"'), challenge
    assert ('error="invalid_token"' in challenge) is error, challenge


API = sorted((s.rule, m) for s in ROUTES.values() for m in s.methods
             if s.permission is not None)


@pytest.mark.parametrize(("rule", "method"), API, ids=[f"{m} {r}" for r, m in API])
def test_api_route_refuses_every_credential_but_an_api_key(sso_app, creds, rule,  # noqa: F811
                                                          method) -> None:
    """/api/v1 takes API keys only: a SCIM token, a directory's OAuth access token or
    client, the portal's client are each a 401 with the API's challenge, naming nothing."""
    web = sso_app.test_client()
    url = rule.replace("<org_id>", creds["tenant"].org.slug)
    for name, headers in _strangers(creds).items():
        if name.endswith(" key"):
            continue  # every role's: tests/api/test_authorization.py
        response = _open(web, method, _url(url), headers)
        assert response.status_code == 401, (name, response.get_data(as_text=True))
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer realm="roster-api"'), challenge
        assert response.get_json()["type"].endswith("/unauthorized")
        _assert_no_tenant_data(response, creds, _url(url))


OBJECT_RULES = [(kind, method) for kind in ("Users", "Groups")
                for method in ("GET", "PUT", "PATCH", "DELETE")]


@pytest.mark.parametrize(("kind", "method"), OBJECT_RULES,
                         ids=[f"{m} {k}" for k, m in OBJECT_RULES])
def test_scim_object_of_another_directory_is_a_missing_one(sso_app, creds, kind,  # noqa: F811
                                                          method) -> None:
    """Another directory's SCIM token or OAuth access token on a tenant's user or group,
    alone or in a Bulk operation: the 404 an id that names nothing gets, word for word, and
    nothing changes."""
    web, tenant = sso_app.test_client(), creds["tenant"]
    body = {"Users": {"schemas": [USER], "userName": "ann@acme.test"},
            "Groups": {"schemas": [GROUP], "displayName": "Acme buyers"}}[kind]
    created = web.post(f"/scim/v2/{kind}", headers=tenant.headers, json=body).get_json()
    sent = body if method == "PUT" else BODIES.get(method)
    for headers in (creds["other"].headers, creds["other_access"]):
        answers = []
        for target in (created["id"], "3f1e0c9a-0000-4000-8000-000000000000"):
            response = web.open(f"/scim/v2/{kind}/{target}", method=method, headers=headers,
                                **({} if sent is None else {"json": sent}))
            assert response.status_code == 404, response.get_data(as_text=True)
            bulk = web.post("/scim/v2/Bulk", headers=headers, json={"schemas": [BULK],
                            "Operations": [{"method": method, "path": f"/{kind}/{target}",
                                            **({} if sent is None else {"data": sent})}]})
            assert bulk.status_code == 200, bulk.get_data(as_text=True)
            answers.append([json.loads(r.get_data(as_text=True).replace(target, "<id>"))
                            for r in (response, bulk)])
        assert answers[0] == answers[1]
    again = web.get(f"/scim/v2/{kind}/{created['id']}", headers=tenant.headers).get_json()
    assert again == created
