"""Claims about a user for the portal: organization, units, roles, permissions (OIDC Core §5.1).

Pure assembly from rows: the grants table joined to units and roles.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Grant, Organization, Role, Unit, User

# Scopes the portal may ask for, and the claims each releases (OIDC Core §5.4).
SCOPE_CLAIMS: dict[str, tuple[str, ...]] = {
    "openid": ("sub",),
    "email": ("email", "email_verified"),
    "profile": ("name", "given_name", "family_name", "preferred_username", "locale"),
    "organization": ("org_id", "org_slug", "org_name", "units", "roles", "permissions"),
}


def user_claims(session: Session, user: User) -> dict[str, Any]:
    """Every claim Roster can state about ``user``; the scope filter comes after."""
    org = session.get(Organization, user.organization_id)
    rows = session.execute(
        select(Grant, Unit, Role).join(Unit, Grant.unit_id == Unit.id)
        .join(Role, Grant.role_id == Role.id).where(Grant.user_id == user.id)
        .order_by(Unit.path, Role.key)).all()
    units: dict[str, dict[str, Any]] = {}
    roles: list[dict[str, Any]] = []
    permissions: list[dict[str, Any]] = []
    for grant, unit, role in rows:
        units.setdefault(unit.id, {"id": unit.id, "name": unit.name, "path": unit.path,
                                   "kind": unit.kind.value})
        roles.append({"role": role.key, "name": role.name, "unit_id": unit.id,
                      "unit_path": unit.path, "parameters": grant.parameters})
        permissions.extend({"permission": p, "unit_id": unit.id, "role": role.key,
                            "parameters": grant.parameters} for p in role.permissions)
    name = user.display_name or " ".join(
        p for p in (user.given_name, user.family_name) if p) or user.user_name
    return {
        "sub": user.id, "email": user.primary_email, "email_verified": bool(user.primary_email),
        "name": name, "given_name": user.given_name, "family_name": user.family_name,
        "preferred_username": user.user_name, "locale": user.locale,
        "org_id": user.organization_id, "org_slug": org.slug if org else None,
        "org_name": org.name if org else None, "units": list(units.values()), "roles": roles,
        "permissions": permissions,
    }


def filter_by_scope(claims: dict[str, Any], scope: str) -> dict[str, Any]:
    """Only the claims the granted scopes release, without empty values."""
    allowed = {c for s in scope.split() for c in SCOPE_CLAIMS.get(s, ())}
    return {k: v for k, v in claims.items() if k in allowed and v is not None}
