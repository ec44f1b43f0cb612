"""Every /api/v1 route against every role, a key of another organization and bad keys.

Routes are enumerated from the declarations and checked against the app's URL map, so a
route added without ``api_route`` (and so without a permission) fails this suite.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

import app.api.views  # noqa: F401  (imports every route module, filling ROUTES)
from app.api.frame import ROUTES, RouteSpec
from app.api.permissions import PERMISSIONS
from app.db import utcnow
from app.directory.apikeys import revoke_key
from app.models import Organization
from app.models.api import ApiKey
from app.sso.connections import add_domain, create_connection
from tests.api.conftest import make_key
from tests.api.test_frame import assert_problem
from tests.conftest import OPERATOR, Tenant, rows

# Path parameters filled with the tenant's own data (see the ``samples`` fixture); any other
# parameter gets a value that exists nowhere, so a permitted caller may answer 404 there.
_PARAM = re.compile(r"<(?:[a-z_]+:)?(\w+)>")
CASES = [(spec, method) for spec in sorted(ROUTES.values(), key=lambda s: s.rule)
         for method in spec.methods if spec.permission is not None]
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
def samples(db, client, tenant: Tenant) -> dict[str, str]:
    """Ids of the tenant's data: org, directory, token, a user, a deprovisioning record."""
    created = [client.post("/scim/v2/Users", headers=tenant.headers,
                           json={"schemas": [USER], "userName": name}).get_json()["id"]
               for name in ("ann@acme.test", "bob@acme.test")]
    client.patch(f"/scim/v2/Users/{created[1]}", headers=tenant.headers, json={
        "schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False}}]})
    record = rows(db, "SELECT id FROM deprovision_records WHERE user_id = :u", u=created[1])
    token = rows(db, "SELECT id FROM directory_tokens WHERE directory_id = :d",
                 d=tenant.directory.id)
    return {"org_id": tenant.org.id, "directory_id": tenant.directory.id,
            "token_id": token[0][0], "user_id": created[0], "record_id": record[0][0],
            "connection_id": _connection_with_domain(db, tenant.org.id), "domain": "acme.test"}


def _connection_with_domain(db, org_id: str) -> str:
    """An SSO connection of the organization with the domain acme.test (unverified)."""
    with db.transaction() as session:
        conn = create_connection(session, session.get(Organization, org_id), "idp", "saml",
                                 OPERATOR)
        add_domain(session, conn, "acme.test", OPERATOR)
        return conn.id


@pytest.fixture
def foreign_connection(db, other_tenant: Tenant) -> str:
    """A connection of the other organization, with the same domain name as the tenant's."""
    return _connection_with_domain(db, other_tenant.org.id)


def _url(spec: RouteSpec, samples: dict[str, str]) -> str:
    return _PARAM.sub(lambda m: samples.get(m.group(1), "does-not-exist"), spec.rule)


def _addresses_tenant_data(spec: RouteSpec, samples: dict[str, str]) -> bool:
    return any(name in samples for name in _PARAM.findall(spec.rule))


def _call(client, method: str, url: str, headers: dict[str, str] | None = None):
    kwargs = {"json": {}} if method not in ("GET", "HEAD", "DELETE") else {}
    response = client.open(url, method=method, headers=headers or {}, **kwargs)
    response.get_data()  # drain streamed bodies (exports) inside this request's context
    response.close()
    return response


def test_every_api_rule_is_declared_with_a_permission(app):
    """Each URL rule under /api/v1 was registered through api_route (so has a permission)."""
    api_rules = [r for r in app.url_map.iter_rules() if r.rule.startswith("/api/v1")]
    assert api_rules
    undeclared = [r.rule for r in api_rules if r.endpoint not in ROUTES]
    assert undeclared == [], f"declare these with app.api.frame.api_route: {undeclared}"
    for rule in api_rules:
        spec = ROUTES[rule.endpoint]
        assert spec.rule == rule.rule
        assert spec.permission in PERMISSIONS or spec.permission is None


def test_only_the_openapi_description_is_public():
    """No route but the OpenAPI description may skip authentication."""
    public = sorted(s.rule for s in ROUTES.values() if s.permission is None)
    assert public == ["/api/v1/openapi.json"]


def test_operator_holds_every_permission():
    """The operator role is in every permission's role set."""
    assert all("operator" in {r.value for r in roles} for roles in PERMISSIONS.values())


@pytest.mark.parametrize(("spec", "method"), CASES,
                         ids=[f"{m} {s.rule}" for s, m in CASES])
def test_route_enforces_its_permission_for_every_role(db, client, samples, keys, other_keys,
                                                      spec, method):
    """401 without a valid key, 403 for a role lacking the permission, 404 for another
    organization's data, and neither for a permitted key of the right organization."""
    url = _url(spec, samples)
    expired = make_key(db, "operator", expires_at=utcnow() + timedelta(seconds=1))
    revoked = make_key(db, "operator")
    with db.transaction() as session:
        session.get(ApiKey, expired.id).expires_at = utcnow() - timedelta(seconds=1)
        revoke_key(session, session.get(ApiKey, revoked.id), OPERATOR)
    for headers in ({}, {"Authorization": "Bearer rk_not-a-key"}, {"Authorization": "Basic x"},
                    expired.headers, revoked.headers):
        assert_problem(_call(client, method, url, headers), 401, "unauthorized")
    allowed = {r.value for r in PERMISSIONS[spec.permission]}
    for role, key in keys.items():
        response = _call(client, method, url, key.headers)
        if role not in allowed:
            assert_problem(response, 403, "forbidden")
        else:
            assert response.status_code not in (401, 403), (role, response.data)
            assert response.status_code < 500, (role, response.data)
    for role, key in other_keys.items():
        response = _call(client, method, url, key.headers)
        if role not in allowed:
            assert_problem(response, 403, "forbidden")
        elif _addresses_tenant_data(spec, samples):
            body = assert_problem(response, 404, "not-found")
            # The very answer ids that exist nowhere get: existence is not revealed.
            absent = {name: f"no-such-{name}" for name in samples}
            missing = assert_problem(_call(client, method, _url(spec, absent), key.headers),
                                     404, "not-found")
            assert _anonymous(body, samples) == _anonymous(missing, absent), role


def _anonymous(problem: dict, values: dict[str, str]) -> dict:
    """A problem without its request id, each of ``values`` in it replaced by its name."""
    text = json.dumps({k: v for k, v in problem.items() if k not in ("request_id", "instance")},
                      sort_keys=True)
    for name, value in values.items():
        text = text.replace(value, f"<{name}>")
    return json.loads(text)


CONNECTION_CASES = [(spec, method) for spec, method in CASES if "<connection_id>" in spec.rule]


@pytest.mark.parametrize(("spec", "method"), CONNECTION_CASES,
                         ids=[f"{m} {s.rule}" for s, m in CONNECTION_CASES])
def test_connection_routes_hide_another_organizations_connection(
        db, client, samples, keys, foreign_connection, spec, method):
    """The tenant's own organization in the URL with the other one's connection id: 404 for
    every permitted key (operator included), and that connection is left untouched."""
    url = _url(spec, {**samples, "connection_id": foreign_connection})
    query = "SELECT * FROM sso_connections WHERE id = :c"
    before = rows(db, query, c=foreign_connection)
    audit = "SELECT count(*) AS n FROM audit_events WHERE subject_id = :c"
    audited = rows(db, audit, c=foreign_connection)[0].n
    allowed = {r.value for r in PERMISSIONS[spec.permission]}
    # A valid body, so that the 404 comes from the lookup and not from validation.
    body = {"domain": "globex.test"} if spec.rule.endswith("/domains") else {}
    kwargs = {"json": body} if method not in ("GET", "DELETE") else {}
    for role, key in keys.items():
        if role in allowed:
            response = client.open(url, method=method, headers=key.headers, **kwargs)
            assert_problem(response, 404, "not-found")
    assert rows(db, query, c=foreign_connection) == before
    domains = rows(db, "SELECT domain, verified_at FROM sso_connection_domains "
                       "WHERE connection_id = :c", c=foreign_connection)
    assert [(d.domain, d.verified_at) for d in domains] == [("acme.test", None)]
    assert rows(db, audit, c=foreign_connection)[0].n == audited


LIFECYCLE_CASES = [(spec, method) for spec, method in CASES
                   if spec.permission == "deprovisioning:write"]


@pytest.mark.parametrize(("spec", "method"), LIFECYCLE_CASES,
                         ids=[f"{m} {s.rule}" for s, m in LIFECYCLE_CASES])
def test_lifecycle_routes_are_the_own_organizations_admins_and_no_one_elses(
        db, client, samples, keys, other_keys, spec, method):
    """deprovisioning:write is held by the operator and an organization's admins, for that
    organization only: another organization's admin gets 404 on a user it could act on
    (active for deprovision, deprovisioned for reactivate) and nothing changes; its auditor
    and portal keys get 403; then the tenant's own admin acts (201 / 200)."""
    assert {r.value for r in PERMISSIONS[spec.permission]} == {"operator", "admin"}
    reactivating = spec.rule.endswith("/reactivate")
    user_id = rows(db, "SELECT user_id FROM deprovision_records WHERE id = :r",
                   r=samples["record_id"])[0][0] if reactivating else samples["user_id"]
    url = spec.rule.replace("<user_id>", user_id)
    state = ("SELECT (SELECT status FROM users WHERE id = :u) AS status, "
             "(SELECT count(*) FROM deprovision_records) AS records, "
             "(SELECT count(*) FROM audit_events) AS audited, "
             "(SELECT count(*) FROM outbox_events) AS events")
    before = rows(db, state, u=user_id)
    assert_problem(_call(client, method, url, other_keys["admin"].headers), 404, "not-found")
    for role in ("auditor", "portal"):
        assert_problem(_call(client, method, url, other_keys[role].headers), 403, "forbidden")
    assert rows(db, state, u=user_id) == before
    response = _call(client, method, url, keys["admin"].headers)
    assert response.status_code == (200 if reactivating else 201), response.get_json()
    assert rows(db, "SELECT status FROM users WHERE id = :u", u=user_id)[0][0] == (
        "active" if reactivating else "deprovisioned")


@pytest.mark.parametrize("path", ["/api/v1/audit", "/api/v1/audit/export?format=jsonl",
                                  "/api/v1/deprovisions"])
def test_another_organizations_slug_in_a_filter_answers_as_a_missing_one(client, keys,
                                                                        other_tenant, path):
    """``?organization=`` naming another organization is the 404 of a slug that names
    nothing, word for word: a key cannot enumerate the other tenants' slugs."""
    joiner = "&" if "?" in path else "?"
    compared = 0
    for role in ("admin", "auditor", "portal"):
        other = _call(client, "GET", f"{path}{joiner}organization={other_tenant.org.slug}",
                      keys[role].headers)
        if other.status_code == 403:
            continue
        body = assert_problem(other, 404, "not-found")
        missing = assert_problem(_call(client, "GET", f"{path}{joiner}organization=no-such-org",
                                       keys[role].headers), 404, "not-found")
        assert _anonymous(body, {"org": other_tenant.org.slug}) == \
            _anonymous(missing, {"org": "no-such-org"}), role
        compared += 1
    assert compared


@pytest.mark.parametrize("role", ["admin", "auditor", "portal"])
def test_an_org_role_key_bound_to_no_organization_cannot_be_stored(db, client, keys, role):
    """Only an operator key is deployment-wide. ``create_key`` never binds an admin, auditor
    or portal key to no organization, but such a row made another way (by hand, a partial
    restore) was taken as deployment-wide: an admin key listing every organization's
    directories. Authentication refuses it ("bound to no organization"), and since
    migration 0033 the database does not store it at all (the key stays what it was)."""
    key = make_key(db, "operator")
    with pytest.raises(sa.exc.IntegrityError), db.transaction() as session:
        session.get(ApiKey, key.id).role = role
    with db.transaction(readonly=True) as session:
        assert session.get(ApiKey, key.id).role == "operator"
    assert client.get("/api/v1/orgs", headers=key.headers).status_code == 200
