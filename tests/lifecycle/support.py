"""Helpers shared by lifecycle, audit and events tests: equipped users, the roster CLI."""

from __future__ import annotations

import hashlib
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass

from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cli import cli
from app.cli.commands import register
from app.db import Database
from app.directory.directories import set_directory_status
from app.directory.organizations import add_unit
from app.mapping.preview import apply_ruleset
from app.mapping.ruleset import parse_document
from app.models import Directory, Grant, Organization, Role, User
from app.models.sso import IssuedToken, LoginSession
from tests.conftest import OPERATOR, Tenant, make_tenant
from tests.lockwait import in_flight


@dataclass
class Leaver:
    """Ids of the rows a deprovisioning must act on."""

    user_id: str
    manager_id: str
    unit_id: str
    session_ids: list[str]


def add_user(db: Database, tenant: Tenant, name: str, **fields: object) -> str:
    """Insert a provisioned user row directly and return its id."""
    with db.transaction() as session:
        user = User(directory_id=tenant.directory.id, organization_id=tenant.org.id,
                    user_name=name, external_id=f"ext-{name}", primary_email=f"{name}@acme.test",
                    **fields)
        session.add(user)
    return user.id


def _token(session, user_id: str, org_id: str, session_id: str | None, kind: str) -> None:
    session.add(IssuedToken(organization_id=org_id, user_id=user_id, session_id=session_id,
                            client_id="portal", token_type=kind,
                            token_hash=hashlib.sha256(uuid.uuid4().bytes).hexdigest()))


def add_sessions_and_tokens(session, org_id: str, user_id: str) -> list[LoginSession]:
    """Two login sessions and three tokens: access and refresh of the first session, and an
    access token bound to no session."""
    sessions = [LoginSession(organization_id=org_id, user_id=user_id) for _ in range(2)]
    session.add_all(sessions)
    session.flush()
    _token(session, user_id, org_id, sessions[0].id, "access")
    _token(session, user_id, org_id, sessions[0].id, "refresh")
    _token(session, user_id, org_id, None, "access")
    return sessions


def make_leaver(db: Database, tenant: Tenant, name: str = "leaver") -> Leaver:
    """A user with a manager, a manual and a rule grant, two sessions and three tokens."""
    manager_id = add_user(db, tenant, f"{name}-boss", display_name="The Boss")
    user_id = add_user(db, tenant, name, manager_id=manager_id)
    return equip(db, tenant, user_id, manager_id, name)


def equip(db: Database, tenant: Tenant, user_id: str, manager_id: str = "",
          name: str = "scim") -> Leaver:
    """Give an existing user a manual and a rule grant, two sessions and three tokens."""
    with db.transaction() as session:
        org = session.get(Organization, tenant.org.id)
        unit = add_unit(session, org, f"Purchasing-{name}", "department", None, OPERATOR)
        roles = {r.key: r for r in session.scalars(
            select(Role).where(Role.organization_id == org.id))}
        keys = sorted(roles)[:2]
        session.add(Grant(organization_id=org.id, user_id=user_id, unit_id=unit.id,
                          role_id=roles[keys[0]].id, source="manual", parameters={}))
        session.add(Grant(organization_id=org.id, user_id=user_id, unit_id=unit.id,
                          role_id=roles[keys[1]].id, source="rule:x", parameters={}))
        sessions = add_sessions_and_tokens(session, org.id, user_id)
    return Leaver(user_id=user_id, manager_id=manager_id, unit_id=unit.id,
                  session_ids=[s.id for s in sessions])



def roster(database_url: str, *args: str, ok: bool = True, **env: str) -> Result:
    """Run `roster ARGS` in-process against the test database (no traceback allowed)."""
    register()
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False, env={
        "ROSTER_DATABASE__URL": database_url, "ROSTER_APP__ENV": "test", **env})
    assert (result.exit_code == 0) is ok, result.output
    assert "Traceback" not in result.output
    return result


def mapped_tenant(db: Database, vendor: str) -> Tenant:
    """A tenant whose one rule makes members of the group Buyers buyers in Purchasing, and
    whose policy deprovisions a user who loses every grant."""
    tenant = make_tenant(db, "acme", vendor)
    with db.transaction() as session:
        org = session.get(Organization, tenant.org.id)
        add_unit(session, org, "Purchasing", "department", None, OPERATOR)
        apply_ruleset(session, org, parse_document({
            "policy": {"on_loss": "deprovision"},
            "rules": [{"id": "buyers", "role": "buyer", "unit": "Purchasing",
                       "match": {"group": "Buyers"}}]}), OPERATOR, max_loss_share=1.0,
            force=True)
    return tenant


def disable(session: Session, tenant: Tenant) -> None:
    """The operator's disable of the tenant's directory (it deprovisions its users)."""
    directory = session.get(Directory, tenant.directory.id)
    assert directory is not None
    set_directory_status(session, directory, "disabled", OPERATOR)


def disable_in_flight(db: Database, tenant: Tenant) -> AbstractContextManager[None]:
    """A disable whose transaction has deprovisioned the users it saw and is not committed
    until the block ends (then it commits)."""
    return in_flight(db, lambda session: disable(session, tenant))
