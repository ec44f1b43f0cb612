"""Organizations (tenants) and their unit tree."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import literal, select
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.directory.names import ID_SHAPE, checked_name
from app.directory.uniqueness import conflict_on
from app.errors import Conflict, InvalidInput, NotFound
from app.mapping.catalog import RoleSpec
from app.mapping.roles import seed_roles
from app.models import Organization, Unit
from app.models.organization import UnitKind
from app.sql import fold
from app.visible_names import name_problem

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}\Z")
PATH_SEPARATOR = "/"
_UNIT_PATH_INDEX = ("uq_units_org_path",)
# The slug's unique index as PostgreSQL and SQLite name it in a violation.
_SLUG_INDEX = ("uq_organizations_slug", "organizations.slug")


def create_organization(session: Session, slug: str, name: str,
                        catalog: Iterable[RoleSpec], actor: Actor) -> Organization:
    """Create a tenant and seed its role catalog."""
    if not SLUG.match(slug):
        raise InvalidInput(
            f"organization slug {slug!r} must be lower-case letters, digits and '-'",
            field="slug",
        )
    if ID_SHAPE.match(slug):  # every lookup takes an id or a slug
        raise InvalidInput(f"organization slug {slug!r} has the shape of an id; organizations "
                           "are looked up by id or slug, so it could name another one",
                           field="slug")
    taken = f"organization {slug!r} already exists"
    if session.scalar(select(Organization.id).where(Organization.slug == slug)):
        raise Conflict(taken, field="slug")
    checked_name(name, "organization name", optional=True, limit=Organization.name.type.length)
    org = Organization(slug=slug, name=name or slug, policy={})
    session.add(org)
    with conflict_on(_SLUG_INDEX, taken, "slug"):  # a concurrent create of the same slug
        session.flush()
    record(session, organization_id=org.id, action="organization:create", actor=actor,
           subject_type="organization", subject_id=org.id, data={"slug": slug, "name": name})
    seed_roles(session, org, catalog, actor)
    return org


def _fits(value: str | None, column: Any, what: str, field: str) -> None:
    """InvalidInput for a value longer than its column: the same answer on both databases
    (PostgreSQL refuses it, SQLite would keep it)."""
    limit = column.type.length
    if value is not None and len(value) > limit:
        raise InvalidInput(f"{what} is longer than {limit} characters ({len(value)} given)",
                           field=field)


def get_organization(session: Session, ref: str) -> Organization:
    """Find an organization by slug or id; an id wins over a slug that spells it (one
    stored before such slugs were refused), so an id never names another organization."""
    org = session.scalar(
        select(Organization).where((Organization.slug == ref) | (Organization.id == ref))
        .order_by((Organization.id == ref).desc()).limit(1)
    )
    if org is None:
        raise missing_organization(ref)
    return org


def missing_organization(ref: str) -> NotFound:
    """The 404 of a slug or id that names no organization: also what an org-bound API key
    gets for another organization's, so its existence is not revealed."""
    return NotFound(f"organization {ref!r} does not exist", field="org")


def list_organizations(session: Session) -> list[Organization]:
    """Every organization, by slug."""
    return list(session.scalars(select(Organization).order_by(Organization.slug)))


def add_unit(session: Session, org: Organization, name: str, kind: str,
             parent_ref: str | None, actor: Actor) -> Unit:
    """Add a unit under ``parent_ref`` (a path like ``Engineering/Tokyo``, or an id)."""
    name = name.strip()
    if not name or PATH_SEPARATOR in name:
        raise InvalidInput(f"unit name {name!r} must be non-empty and contain no '/'",
                           field="name")
    if (problem := name_problem(name)) is not None:
        raise InvalidInput(f"unit name {name!r} must {problem}", field="name")
    try:
        unit_kind = UnitKind(kind)
    except ValueError:
        kinds = ", ".join(k.value for k in UnitKind)
        raise InvalidInput(f"unit kind {kind!r} is not one of {kinds}", field="kind") from None
    parent = find_unit(session, org, parent_ref) if parent_ref else None
    path = f"{parent.path}{PATH_SEPARATOR}{name}" if parent else name
    _fits(name, Unit.name, "unit name", "name")
    _fits(path, Unit.path, "unit path", "parent")
    if (same := _unit_at(session, org, path)) is not None:
        raise Conflict(_taken(org, same.path), field="name")
    taken = _taken(org, path)
    unit = Unit(organization_id=org.id, parent_id=parent.id if parent else None,
                kind=unit_kind, name=name, path=path)
    session.add(unit)
    # PostgreSQL: a concurrent add of the same path passed the check above too; the index
    # refuses the later one once the first commits.
    with conflict_on(_UNIT_PATH_INDEX, taken, "name"):
        session.flush()
    record(session, organization_id=org.id, action="unit:create", actor=actor,
           subject_type="unit", subject_id=unit.id, data={"path": path, "kind": kind})
    return unit


def ensure_unit(session: Session, org: Organization, name: str, kind: str,
                parent_path: str | None, actor: Actor) -> Unit:
    """The unit ``name`` under ``parent_path``, added (``add_unit``) unless it exists.

    For evaluation (``create_unit`` rules): concurrent writes needing the same new unit all
    get it. The add runs in a savepoint; when another transaction added the path first
    (PostgreSQL: the insert waited for its commit), the savepoint is rolled back and that
    unit is read. Only the transaction that created it audits ``unit:create``.
    """
    try:
        with session.begin_nested():
            return add_unit(session, org, name, kind, parent_path, actor)
    except Conflict:
        unit = _unit_at(session, org,
                        PATH_SEPARATOR.join(p for p in (parent_path, name.strip()) if p))
        if unit is None:
            raise
        return unit


def _unit_at(session: Session, org: Organization, path: str) -> Unit | None:
    """The unit whose path is ``path`` in any case: one name, as the mapping matches it and
    the index uq_units_org_path (on the folded path) enforces it (migration 0022)."""
    return session.scalar(select(Unit).where(Unit.organization_id == org.id,
                                             fold(Unit.path) == fold(literal(path))))


def _taken(org: Organization, path: str) -> str:
    return f"unit {path!r} already exists in {org.slug}"


def find_unit(session: Session, org: Organization, ref: str) -> Unit:
    """Find a unit of ``org`` by id, or by path in any case (one name, as ``_unit_at``)."""
    # An id wins over a path that spells it (a unit named after an IdP attribute may hold
    # one): the id always names its own unit, not whichever row the database returns first.
    unit = session.scalar(
        select(Unit).where(Unit.organization_id == org.id,
                           (fold(Unit.path) == fold(literal(ref))) | (Unit.id == ref))
        .order_by((Unit.id == ref).desc()).limit(1)
    )
    if unit is None:
        raise NotFound(f"unit {ref!r} does not exist in {org.slug}", field="parent")
    return unit


def list_units(session: Session, org: Organization) -> list[Unit]:
    """The unit tree of an organization in path order (parents before children)."""
    return list(session.scalars(
        select(Unit).where(Unit.organization_id == org.id).order_by(Unit.path)
    ))
