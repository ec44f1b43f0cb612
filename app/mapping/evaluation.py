"""Re-evaluation of grants after a change. Filled in by the mapping issue.

Callers (SCIM user/group services) call these after every change that may affect grants,
inside their transaction. Until rules exist they change nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from app.audit import Actor


def reevaluate_users(session: Session, organization_id: str, user_ids: Iterable[str],
                     actor: Actor) -> None:
    """Recompute the grants of the given users and apply the diff (no-op without rules)."""
    del session, organization_id, user_ids, actor


def reevaluate_group_members(session: Session, organization_id: str, group_id: str,
                             actor: Actor) -> None:
    """Recompute grants of a group's members after a rename (no-op without rules)."""
    del session, organization_id, group_id, actor
