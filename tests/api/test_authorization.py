"""Every /api/v1 route against every role, a key of another organization and bad keys.

Routes are enumerated from the declarations and checked against the app's URL map, so a
route added without ``api_route`` (and so without a permission) fails this suite.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest

import app.api.views  # noqa: F401  (imports every route module, filling ROUTES)
from app.api.frame import ROUTES, RouteSpec
from app.api.permissions import PERMISSIONS
from app.db import utcnow
from app.directory.apikeys import revoke_key
from app.models.api import ApiKey
from tests.api.conftest import make_key
from tests.api.test_frame import assert_problem
from tests.conftest import OPERATOR, Tenant

# Values for path parameters that name the tenant's own data. Unlisted parameters get a
# value that exists nowhere, so a permitted caller may then answer 404.
PATH_SAMPLES: dict[str, Callable[[Tenant], str]] = {
    "org_id": lambda t: t.org.id,
    "directory_id": lambda t: t.directory.id,
}
_PARAM = re.compile(r"<(?:[a-z_]+:)?(\w+)>")
CASES = [(spec, method) for spec in sorted(ROUTES.values(), key=lambda s: s.rule)
         for method in spec.methods if spec.permission is not None]


def _url(spec: RouteSpec, tenant: Tenant) -> str:
    return _PARAM.sub(lambda m: PATH_SAMPLES.get(m.group(1), lambda _t: "does-not-exist")(
        tenant), spec.rule)


def _call(client, method: str, url: str, headers: dict[str, str] | None = None):
    kwargs = {"json": {}} if method not in ("GET", "HEAD", "DELETE") else {}
    return client.open(url, method=method, headers=headers or {}, **kwargs)


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
def test_route_enforces_its_permission_for_every_role(db, client, tenant, keys, other_keys,
                                                      spec, method):
    """401 without a valid key, 403 for a role lacking the permission, 404 for another
    organization's data, and neither for a permitted key of the right organization."""
    url = _url(spec, tenant)
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
        elif spec.org_scoped:
            assert_problem(response, 404, "not-found")
