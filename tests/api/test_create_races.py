"""Double submit of a create route: the request that loses the race on a unique name is a
409 problem, as a sequential duplicate is, never a 500.

On PostgreSQL both requests pass the service's "already exists?" check before either
commits; the second INSERT then waits on the unique index and fails when the first
commits. On SQLite the single write lock orders them, so the second sees the first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.directory.directories import create_directory
from app.directory.organizations import create_organization
from app.directory.tokens import issue_token
from app.mapping.catalog import RoleSpec
from app.mapping.roles import add_role
from app.models import Directory, Organization
from app.models.sso import SsoConnection
from app.sso.connections import add_domain, create_connection
from tests.api.test_frame import assert_problem
from tests.conftest import CATALOG, OPERATOR, Tenant, rows
from tests.lockwait import in_flight, started


def _org(session: Session, tenant: Tenant) -> Organization:
    org = session.get(Organization, tenant.org.id)
    assert org is not None
    return org


def _connection(session: Session, tenant: Tenant) -> SsoConnection:
    return session.scalars(select(SsoConnection).where(
        SsoConnection.organization_id == tenant.org.id)).one()


# name -> (URL, body, the same create done directly, the table and the count it must hold)
CREATES: dict[str, tuple[str, dict[str, Any], Callable[[Session, Tenant], Any], str]] = {
    "organization": (
        "/api/v1/orgs", {"slug": "twice"},
        lambda s, t: create_organization(s, "twice", "", CATALOG, OPERATOR),
        "SELECT count(*) FROM organizations WHERE slug = 'twice'"),
    "directory": (
        "/api/v1/orgs/acme/directories", {"vendor": "entra", "name": "twice"},
        lambda s, t: create_directory(s, _org(s, t), "twice", "entra", OPERATOR),
        "SELECT count(*) FROM directories WHERE name = 'twice'"),
    "role": (
        "/api/v1/orgs/acme/roles", {"key": "twice", "name": "Twice"},
        lambda s, t: add_role(s, _org(s, t), RoleSpec(key="twice", name="Twice"), OPERATOR),
        "SELECT count(*) FROM roles WHERE key = 'twice'"),
    "connection": (
        "/api/v1/orgs/acme/connections", {"name": "twice", "protocol": "saml"},
        lambda s, t: create_connection(s, _org(s, t), "twice", "saml", OPERATOR),
        "SELECT count(*) FROM sso_connections WHERE name = 'twice'"),
    "domain": (
        "/api/v1/orgs/acme/connections/{connection}/domains", {"domain": "twice.example"},
        lambda s, t: add_domain(s, _connection(s, t), "twice.example", OPERATOR),
        "SELECT count(*) FROM sso_connection_domains WHERE domain = 'twice.example'"),
}


@pytest.mark.parametrize("name", sorted(CREATES))
def test_a_create_that_loses_the_race_is_a_409(db, client, keys, tenant, name):
    """The same create committed by another transaction while the request waits: 409."""
    url, body, create, count = CREATES[name]
    if name == "domain":
        with db.transaction() as session:
            create_connection(session, _org(session, tenant), "routing", "saml", OPERATOR)
        url = url.format(connection=rows(db, "SELECT id FROM sso_connections")[0][0])
    headers = keys["operator"].headers
    def first(session: Session) -> None:
        create(session, tenant)
        session.flush()  # holds the unique index entry until the block ends

    with in_flight(db, first):
        thread, outcome = started(db, lambda: client.post(url, json=body, headers=headers))
    thread.join(30)
    response = outcome["result"]
    assert not isinstance(response, BaseException), response
    problem = assert_problem(response, 409, "conflict")
    assert "already" in problem["detail"]
    assert rows(db, count)[0][0] == 1


def test_a_double_submitted_token_rotation_keeps_the_valid_token_cap(db, client, keys, tenant):
    """max_valid_per_directory (2): the tenant's token and one rotation in flight leave no
    room; the rotation submitted meanwhile counted one valid token and made a third."""
    def first(session: Session) -> None:
        issue_token(session, session.get(Directory, tenant.directory.id), OPERATOR, days=30,
                    max_valid=2)
        session.flush()

    url = "/api/v1/orgs/acme/directories/okta/tokens"
    with in_flight(db, first):
        thread, outcome = started(db, lambda: client.post(url, headers=keys["admin"].headers))
    thread.join(30)
    response = outcome["result"]
    assert not isinstance(response, BaseException), response
    assert "already has 2 valid tokens" in assert_problem(response, 409, "conflict")["detail"]
    assert rows(db, "SELECT count(*) FROM directory_tokens WHERE revoked_at IS NULL")[0][0] == 2
