"""What a SCIM delete hides from others, and its restore shows again, told to the portal.

A SCIM-deleted user is gone from SCIM at once (RFC 7644 §3.6), but its rows stay for a
restore within retention: its memberships (``GET /Groups/{id}`` lists live members only,
app/directory/groups.py) and its reports' link to it (their ``manager`` leaves a deleted
manager out, app/scim/users.py). Those rows do not change, so no membership or user write
announces it: these events do. A deprovisioned (not deleted) user stays a visible member
and manager, so deprovisioning announces nothing here.

Set-wise: one indexed query for the groups and one for the reports (ix_memberships_user_id_
group_id, ix_users_manager_id), and one INSERT for each kind of event, whatever their
number (a manager of thousands). No row of a group or a report is written or locked: the
rows are unchanged, and locking groups or other users after the user's own row would break
the lock order (app/mapping/reevaluation.py). Their versions move all the same: the user's
``shown_version`` (its own row) and its groups' member versions, at commit
(app/directory/versions.py).
"""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.directory.versions import groups_of, move_member_versions, move_shown
from app.events import emit_many
from app.models import User
from app.sql import fetch

_REPORTS = (select(User.id).where(User.manager_id == bindparam("user_id"),
                                  User.id != bindparam("user_id"), User.deleted_at.is_(None))
            .order_by(User.id))


def announce_visibility(session: Session, user: User, *, shown: bool) -> None:
    """``user`` was just SCIM-deleted (``shown`` False) or restored (True): one
    ``membership.removed`` / ``membership.added`` per group it belongs to (aggregate the
    group, ``user_ids`` the user), then one ``user.updated`` (``changed: ["manager_id"]``)
    per live report, in id order. The groups' and the reports' versions move with it."""
    connection = session.connection()
    params = {"user_id": user.id}
    move_shown(user)
    groups = groups_of(session, user.id)
    move_member_versions(session, groups)
    emit_many(session, organization_id=user.organization_id,
              type="membership.added" if shown else "membership.removed",
              events=[(gid, {"group_id": gid, "user_ids": [user.id]}) for gid in groups])
    reports = [row[0] for row in fetch(connection, _REPORTS, params)]
    emit_many(session, organization_id=user.organization_id, type="user.updated",
              events=[(rid, {"user_id": rid, "changed": ["manager_id"]}) for rid in reports])
