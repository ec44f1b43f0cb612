"""The one declaration of what each API role may do (issue 3).

Add a permission here before using it in ``api_route(..., permission=...)``; the decorator
refuses unknown names at import time. Operators hold every permission. Org-bound roles
(admin, auditor, portal) only ever see their own organization: the frame answers 404 for
another organization's data, so its existence is not revealed.
"""

from __future__ import annotations

from app.models.api import ApiRole

OPERATOR, ADMIN, AUDITOR, PORTAL = ApiRole.operator, ApiRole.admin, ApiRole.auditor, \
    ApiRole.portal

# What an auditor reads; an admin reads it too.
_REVIEW = frozenset({ADMIN, AUDITOR})

# permission -> roles other than operator that hold it (operator holds all).
_GRANTS: dict[str, frozenset[ApiRole]] = {
    # The deployment: organizations and API keys are the operator's alone.
    "orgs:list": frozenset(),
    "orgs:write": frozenset(),
    "apikeys:read": frozenset(),
    "apikeys:write": frozenset(),
    # One organization's own record (its id, slug and name).
    "orgs:read": frozenset({ADMIN, AUDITOR, PORTAL}),
    # Structure and connections of an organization: its admins manage them.
    "units:read": frozenset({ADMIN}),
    "units:write": frozenset({ADMIN}),
    "directories:read": frozenset({ADMIN}),
    "directories:write": frozenset({ADMIN}),
    "tokens:read": frozenset({ADMIN}),
    "tokens:write": frozenset({ADMIN}),
    "roles:read": frozenset({ADMIN}),
    "roles:write": frozenset({ADMIN}),
    "mappings:read": frozenset({ADMIN}),
    "mappings:write": frozenset({ADMIN}),
    "connections:read": frozenset({ADMIN}),
    "connections:write": frozenset({ADMIN}),
    # Verifying an email domain routes its addresses (any organization's employees) to a
    # connection: only the operator, who checked ownership, may do it.
    "connections:verify": frozenset(),
    # Security review: read-only, for auditors and admins.
    "audit:read": _REVIEW,
    "deprovisioning:read": _REVIEW,
    "traces:read": _REVIEW,
    "dialects:read": _REVIEW,
    # Take a leaver out (or back) at once through the API, as the CLI's operator does:
    # the customer's admins for their own organization; never auditors or the portal.
    "deprovisioning:write": frozenset({ADMIN}),
    # The portal's backend: who may do what, and what changed.
    "access:read": frozenset({ADMIN, PORTAL}),
    "events:read": frozenset({PORTAL}),
}

PERMISSIONS: dict[str, frozenset[ApiRole]] = {
    name: roles | {OPERATOR} for name, roles in _GRANTS.items()
}


def allows(role: ApiRole, permission: str) -> bool:
    """Whether ``role`` holds ``permission`` (unknown permissions are held by nobody)."""
    return role in PERMISSIONS.get(permission, frozenset())


def permissions_of(role: ApiRole) -> list[str]:
    """Every permission a role holds, sorted (for documentation and listings)."""
    return sorted(name for name, roles in PERMISSIONS.items() if role in roles)
