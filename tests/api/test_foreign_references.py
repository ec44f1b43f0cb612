"""Another organization's objects named inside the caller's own organization: a directory
or SCIM token in a path under the caller's own organization, a login trace, and ids carried
in a body (a unit's parent, a connection's directory, a mapping rule's unit). Each is the
answer an id that names nothing gets, word for word, and nothing of the other organization
changes. (tests/api/test_authorization.py walks every route with the other organization in
the path itself.)"""

from __future__ import annotations

import json

import pytest

import app.api.views  # noqa: F401  (imports every route module, filling ROUTES)
from app.api.frame import ROUTES
from app.directory.organizations import add_unit
from app.models import Organization
from app.sso.traces import record_trace
from tests.conftest import OPERATOR, Tenant, rows

ABSENT = "3f1e0c9a-0000-4000-8000-000000000000"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def _same_answer(client, method: str, urls: tuple[str, str], values: tuple[str, str],
                 headers: dict[str, str], body: dict | None = None) -> dict:
    """The answers to the two URLs (or bodies), ``values`` masked: equal, and a 4xx."""
    answers = []
    for url, value in zip(urls, values, strict=True):
        sent = json.loads(json.dumps(body).replace("<ref>", value)) if body else None
        response = client.open(url.replace("<ref>", value), method=method, headers=headers,
                               **({"json": sent} if sent is not None else {}))
        assert 400 <= response.status_code < 500, response.get_data(as_text=True)
        problem = response.get_json()
        answers.append(json.loads(json.dumps(
            {k: v for k, v in problem.items() if k not in ("request_id", "instance")})
            .replace(value, "<ref>")))
    assert answers[0] == answers[1]
    return answers[0]


def _foreign_token(db, other: Tenant) -> str:
    return rows(db, "SELECT id FROM directory_tokens WHERE directory_id = :d",
                d=other.directory.id)[0][0]


DIRECTORY_CASES = sorted((s.rule, m) for s in ROUTES.values() for m in s.methods
                         if s.rule.startswith("/api/v1/orgs/<org_id>/directories/<directory_id>"))


@pytest.mark.parametrize(("rule", "method"), DIRECTORY_CASES,
                         ids=[f"{m} {r}" for r, m in DIRECTORY_CASES])
def test_another_organizations_directory_under_the_own_organization_is_missing(
        db, client, tenant, other_tenant, keys, rule, method):
    """/orgs/OWN/directories/THEIRS/...: operator and admin get the 404 of a directory that
    does not exist, and the other directory and its tokens are as they were."""
    token = _foreign_token(db, other_tenant)
    state = "SELECT d.status, t.revoked_at, (SELECT count(*) FROM directory_tokens) AS n " \
            "FROM directories d JOIN directory_tokens t ON t.directory_id = d.id WHERE d.id = :d"
    before = rows(db, state, d=other_tenant.directory.id)
    url = rule.replace("<org_id>", tenant.org.slug).replace("<directory_id>", "<ref>") \
        .replace("<token_id>", token)
    for role in ("operator", "admin"):
        problem = _same_answer(client, method, (url, url), (other_tenant.directory.id, ABSENT),
                               keys[role].headers)
        assert problem["status"] == 404
    assert rows(db, state, d=other_tenant.directory.id) == before


def test_another_directorys_token_under_the_own_directory_is_missing(db, client, tenant,
                                                                     other_tenant, keys):
    """Revoking the other organization's token through the own directory's path: the 404 of
    a token that does not exist, and the token keeps working."""
    token = _foreign_token(db, other_tenant)
    url = f"/api/v1/orgs/{tenant.org.slug}/directories/{tenant.directory.id}/tokens/<ref>/revoke"
    for role in ("operator", "admin"):
        problem = _same_answer(client, "POST", (url, url), (token, ABSENT), keys[role].headers)
        assert problem["status"] == 404
    assert rows(db, "SELECT revoked_at FROM directory_tokens WHERE id = :t",
                t=token)[0][0] is None
    assert client.get("/scim/v2/Users", headers=other_tenant.headers).status_code == 200


def test_another_organizations_trace_is_missing(db, client, tenant, other_tenant, keys):
    """A login trace id of the other organization under the own one: the 404 of an id that
    names no trace, for every role that reads traces."""
    with db.transaction() as session:
        trace = record_trace(session, organization_id=other_tenant.org.id, connection_id=None,
                             protocol="saml", reason="replay", detail="eve@globex.test",
                             subject="eve@globex.test", payload={}, request_id=None)
    url = f"/api/v1/orgs/{tenant.org.slug}/sso/traces/<ref>"
    for role in ("operator", "admin", "auditor"):
        problem = _same_answer(client, "GET", (url, url), (trace.id, ABSENT),
                               keys[role].headers)
        assert problem["status"] == 404
        assert "eve" not in json.dumps(problem)


@pytest.fixture
def foreign_unit(db, other_tenant: Tenant) -> str:
    """A unit of the other organization."""
    with db.transaction() as session:
        org = session.get(Organization, other_tenant.org.id)
        return add_unit(session, org, "Globex Labs", "department", None, OPERATOR).id


@pytest.mark.parametrize(("path", "body"), [
    ("units", {"name": "Lyon", "kind": "location", "parent": "<ref>"}),
    ("connections", {"name": "idp", "protocol": "saml", "directory": "<ref>"}),
    ("mapping", {"rules": [{"id": "r1", "priority": 1, "role": "buyer", "unit": "<ref>",
                            "match": {"group": "Buyers"}}]}),
    ("mapping:preview", {"rules": [{"id": "r1", "priority": 1, "role": "buyer",
                                    "unit": "<ref>", "match": {"group": "Buyers"}}]}),
], ids=["unit parent", "connection directory", "mapping unit", "preview unit"])
def test_another_organizations_id_in_a_body_is_a_missing_one(db, client, tenant, other_tenant,
                                                            keys, foreign_unit, path, body):
    """An id of the other organization in a body (a unit, a directory) is refused as one
    that names nothing, for the operator and the admin; nothing is written."""
    ref = other_tenant.directory.id if path == "connections" else foreign_unit
    method = "PUT" if path == "mapping" else "POST"
    url = f"/api/v1/orgs/{tenant.org.slug}/{path}"
    counts = "SELECT (SELECT count(*) FROM units) AS u, (SELECT count(*) FROM " \
             "sso_connections) AS c, (SELECT count(*) FROM audit_events) AS a"
    before = rows(db, counts)
    for role in ("operator", "admin"):
        problem = _same_answer(client, method, (url, url), (ref, ABSENT), keys[role].headers,
                               body)
        assert "globex" not in json.dumps(problem).lower()
    assert rows(db, counts) == before
