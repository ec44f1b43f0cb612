"""Effective access of a user: grants with permissions, parameters and reasons; approvers.

The same structure feeds GET /api/v1/users/{id}/access and `roster user explain` (in words).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import literal, or_, select
from sqlalchemy.orm import Session

from app.directory.organizations import PATH_SEPARATOR
from app.errors import Conflict, NotFound
from app.models import Grant, Organization, Role, Unit, User
from app.sql import fold, fold_text

APPROVE = "orders.approve"
MAX_MANAGER_DEPTH = 20


# Users listed when a name or email names several (one per directory of the organization).
_NAMESAKES_SHOWN = 10


def find_user(session: Session, org: Organization, ref: str) -> User:
    """A user of ``org`` by id, userName or primary email (case-insensitive). Each
    directory of an organization (two IdPs during a migration) may hold the name: then it
    is refused naming each holder, as `roster lifecycle` refuses it, not one of them
    explained at random."""
    users = list(session.scalars(select(User).where(
        User.organization_id == org.id, User.deleted_at.is_(None),
        or_(User.id == ref, fold(User.user_name) == fold(literal(ref)),
            User.primary_email == fold_text(ref))).order_by(User.id)
        .limit(_NAMESAKES_SHOWN + 1)))
    by_id = [user for user in users if user.id == ref]
    if by_id:
        return by_id[0]
    if not users:
        raise NotFound(f"user {ref!r} does not exist in {org.slug}", field="user")
    if len(users) > 1:
        holders = ", ".join(f"{user.id} (directory {user.directory_id}, {user.status.value})"
                            for user in users[:_NAMESAKES_SHOWN])
        raise Conflict(f"several users of {org.slug} are named {ref}: {holders}; give the id "
                       "of the one meant", field="user")
    return users[0]


def _person(user: User) -> dict[str, Any]:
    return {"user_id": user.id, "user_name": user.user_name,
            "display_name": user.display_name or user.name_formatted}


def _why(grant: Grant) -> dict[str, Any]:
    reason = dict(grant.reason or {})
    kind = "rule" if grant.source.startswith("rule:") else grant.source
    why: dict[str, Any] = {"kind": kind, "since": grant.created_at.isoformat()}
    if kind == "rule":
        why.update(rule=grant.source.removeprefix("rule:"), priority=reason.get("priority"),
                   matched=reason.get("matched", []),
                   also_matched=reason.get("also_matched", []))
    return why


def _grants(session: Session, user: User) -> list[dict[str, Any]]:
    result = session.execute(
        select(Grant, Role, Unit).join(Role, Role.id == Grant.role_id)
        .join(Unit, Unit.id == Grant.unit_id).where(Grant.user_id == user.id)
        .order_by(Unit.path, Role.key))
    items = []
    for grant, role, unit in result:
        defaults = {name: decl.get("default") for name, decl in (role.parameters or {}).items()}
        items.append({
            "grant_id": grant.id, "role": role.key, "role_name": role.name,
            "unit": {"id": unit.id, "path": unit.path},
            "permissions": sorted(role.permissions or []),
            "parameters": {**defaults, **(grant.parameters or {})},
            "source": grant.source, "why": _why(grant),
        })
    return items


def _managers(session: Session, user: User) -> list[dict[str, Any]]:
    """The SCIM manager chain upward (enterprise extension, RFC 7643 §4.3), cycle-safe."""
    chain: list[dict[str, Any]] = []
    seen = {user.id}
    current = user.manager_id
    while current and current not in seen and len(chain) < MAX_MANAGER_DEPTH:
        seen.add(current)
        manager = session.get(User, current)
        # A SCIM-deleted manager is left out of its reports' manager (README): the chain
        # stops there too, rather than name an approver that SCIM no longer shows.
        if manager is None or manager.deleted_at is not None \
                or manager.organization_id != user.organization_id:
            break
        chain.append({**_person(manager), "via": "manager", "level": len(chain) + 1,
                      "active": manager.status.value == "active"})
        current = manager.manager_id
    return chain


def _ancestors(paths: list[str]) -> list[str]:
    out: set[str] = set()
    for path in paths:
        parts = path.split(PATH_SEPARATOR)
        out.update(PATH_SEPARATOR.join(parts[:i]) for i in range(1, len(parts) + 1))
    return sorted(out, key=lambda p: (-p.count(PATH_SEPARATOR), p))


def _approvers(session: Session, user: User, unit_paths: list[str]) -> list[dict[str, Any]]:
    """Holders of an approving role in the user's units or above them, nearest unit first."""
    paths = _ancestors(unit_paths)
    roles = [r for r in session.scalars(select(Role).where(
        Role.organization_id == user.organization_id)) if APPROVE in (r.permissions or [])]
    if not paths or not roles:
        return []
    found = session.execute(
        select(Grant, Role.key, Unit.path, User).join(Role, Role.id == Grant.role_id)
        .join(Unit, Unit.id == Grant.unit_id).join(User, User.id == Grant.user_id)
        .where(Unit.organization_id == user.organization_id, Unit.path.in_(paths),
               Grant.role_id.in_([r.id for r in roles]), Grant.user_id != user.id,
               User.status == "active"))
    rank = {p: i for i, p in enumerate(paths)}
    entries = [{**_person(approver), "via": "approver", "role": role_key, "unit": path,
                "approval_limit": (grant.parameters or {}).get("approval_limit")}
               for grant, role_key, path, approver in found]
    return sorted(entries, key=lambda e: (rank[e["unit"]], e["user_name"]))


def effective_access(session: Session, user: User) -> dict[str, Any]:
    """The user's grants (unit, permissions, effective parameters, why) and approver chain."""
    grants = _grants(session, user)
    return {
        "user": {**_person(user), "status": user.status.value},
        "grants": grants,
        "approvers": {"managers": _managers(session, user),
                      "approvers": _approvers(session, user,
                                              [g["unit"]["path"] for g in grants])},
    }


def format_value(value: Any) -> str:
    """A parameter value for people: money as '5000 EUR', booleans lower-case."""
    if isinstance(value, dict) and {"amount", "currency"} <= set(value):
        return f"{value['amount']} {value['currency']}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _evidence(item: dict[str, Any]) -> str:
    if "group" in item:
        return f"member of group \"{item['group']}\""
    if "attribute" in item:
        return f"{item['attribute']} is \"{item['value']}\"" if item["value"] is not None \
            else f"{item['attribute']} is not set"
    return str(item)


def explain_lines(access: dict[str, Any]) -> list[str]:
    """The effective access in words, one line per fact (for `roster user explain`)."""
    user = access["user"]
    name = user["user_name"] + (f" ({user['display_name']})" if user["display_name"] else "")
    grants = access["grants"]
    lines = [f"{name} is {user['status']} and holds {len(grants)} grant"
             f"{'' if len(grants) == 1 else 's'}."]
    for g in grants:
        why = g["why"]
        since = why["since"][:16].replace("T", " ")
        if why["kind"] == "rule":
            matched = " and ".join(_evidence(e) for e in why["matched"]) or "a negated condition"
            cause = f"rule {why['rule']} (priority {why['priority']}) because {matched}"
            if why["also_matched"]:
                cause += f"; also matched: {', '.join(why['also_matched'])}"
        elif why["kind"] == "default":
            cause = "the organization's default role (no rule matched)"
        else:
            cause = "granted manually"
        lines.append(f"- {g['role_name']} in {g['unit']['path']} since {since} UTC: {cause}.")
        lines.append(f"    permissions: {', '.join(g['permissions']) or '(none)'}")
        if g["parameters"]:
            params = ", ".join(f"{k} {format_value(v)}" for k, v in sorted(g["parameters"].items()))
            lines.append(f"    parameters: {params}")
    managers = access["approvers"]["managers"]
    approvers = access["approvers"]["approvers"]
    if not managers and not approvers:
        lines.append("Approver chain: nobody (no manager and no approver above these units).")
        return lines
    lines.append("Approver chain:")
    for m in managers:
        lines.append(f"- manager (level {m['level']}): {m['user_name']}"
                     f"{'' if m['active'] else ' (not active)'}")
    for a in approvers:
        limit = a["approval_limit"]
        limit = f", approval limit {format_value(limit)}" if limit else ""
        lines.append(f"- {a['role']} in {a['unit']}: {a['user_name']}{limit}")
    return lines
