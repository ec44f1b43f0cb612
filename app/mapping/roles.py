"""Role catalog per organization: seeding from config and custom roles."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.directory.uniqueness import flush_unique
from app.errors import Conflict
from app.mapping.catalog import RoleSpec, validate_spec
from app.models import Organization, Role

# The key's unique index as PostgreSQL and SQLite name it in a violation.
_KEY_INDEX = ("uq_roles_organization_id_key", "roles.organization_id, roles.key")


def add_role(session: Session, org: Organization, spec: RoleSpec, actor: Actor, *,
             custom: bool = True) -> Role:
    """Add one role to an organization's catalog after validating it."""
    spec = validate_spec(spec)
    exists = session.scalar(
        select(Role.id).where(Role.organization_id == org.id, Role.key == spec.key)
    )
    taken = f"role {spec.key} already exists in {org.slug}"
    if exists:
        raise Conflict(taken, field="key")
    role = Role(organization_id=org.id, key=spec.key, name=spec.name,
                description=spec.description, permissions=list(spec.permissions),
                parameters=spec.parameters, custom=custom)
    session.add(role)
    flush_unique(session, _KEY_INDEX, taken, "key")  # a concurrent create of the same key
    record(session, organization_id=org.id, action="role:create", actor=actor,
           subject_type="role", subject_id=role.id,
           data={"key": role.key, "permissions": role.permissions, "custom": custom})
    return role


def seed_roles(session: Session, org: Organization, catalog: Iterable[RoleSpec],
               actor: Actor) -> list[Role]:
    """Give a new organization the deployment's standard role catalog."""
    return [add_role(session, org, spec, actor, custom=False) for spec in catalog]


def list_roles(session: Session, org: Organization) -> list[Role]:
    """The organization's catalog, by key."""
    return list(session.scalars(
        select(Role).where(Role.organization_id == org.id).order_by(Role.key)
    ))
