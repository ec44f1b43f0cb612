"""User lifecycle transitions: deprovision, delete (soft), reactivate.

Every trigger (SCIM active=false, SCIM DELETE, loss of every grant, a disabled directory,
an operator) calls one of these inside the caller's transaction; nothing here commits.
"""

from __future__ import annotations

import dataclasses
import enum
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import bindparam, func, inspect, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.audit import Actor, record
from app.audit.sealed_records import seal_data
from app.db import new_id, on_failure, utcnow
from app.directory.user_names import reclaim_user_name
from app.directory.versions import move_own
from app.errors import Conflict, DomainError
from app.events import emit
from app.lifecycle.guard import guard_on_commit
from app.lifecycle.policy import LifecyclePolicy, current_policy
from app.lifecycle.records import new_record, stamp_on_commit
from app.lifecycle.restore import hold_directory_for_reactivation, restore_access
from app.lifecycle.revocation import (
    announce_revoked_sessions,
    grants_held,
    remove_grants,
    revoke_sessions_and_tokens,
)
from app.lifecycle.visibility import announce_visibility
from app.mapping.locks import share_mapping
from app.models import Directory, Organization, User
from app.models.directory import UserStatus
from app.models.lifecycle import DeprovisionRecord
from app.sql import fetch, fold

GONE = (UserStatus.deprovisioned, UserStatus.deleted)
# The organization's own policy and the directory's vendor, in one round trip (Core: values,
# not objects).
_CONTEXT = (
    select(Organization.policy, Directory.vendor)
    .outerjoin(Directory, Directory.id == bindparam("b_directory"))
    .where(Organization.id == bindparam("b_org"))
)


class Trigger(enum.StrEnum):
    """What caused a deprovisioning (recorded with it)."""

    scim_active_false = "scim_active_false"
    scim_delete = "scim_delete"
    lost_all_grants = "lost_all_grants"
    directory_disabled = "directory_disabled"
    operator = "operator"


def deprovision_user(session: Session, user: User, actor: Actor, *, trigger: Trigger,
                     policy: LifecyclePolicy | None = None, reason: str | None = None,
                     lost: list[dict[str, Any]] | None = None) -> DeprovisionRecord | None:
    """Take the user out everywhere at once: sessions, tokens, grants; record and events.

    Returns the deprovisioning record, or None when the user was already out (idempotent).
    ``reason`` (an operator's words) goes into the record (and so its receipt) and into the
    ``user:deprovision`` audit event. ``lost``: grants (as ``grants_held`` gives them) this
    transaction removed just before, which caused the deprovisioning (the mapping's, on
    ``lost_all_grants``): held until this request, so the record's ``state_before``, its
    counts and the ``user.deprovisioned`` event name them too.
    """
    received = actor.received_at or utcnow()
    if user.status in GONE and not user.active:
        return None
    # Should this transaction fail, a record in a new one says so (README, Deprovisioning).
    on_failure(session, partial(_record_failure, user.id,
                                dataclasses.replace(actor, received_at=received), trigger, reason))
    # Read again under the lock: a deprovisioning that committed while this one waited for
    # the row (its user read unlocked: the CLI, a directory's disable) took the user out.
    _hold_user_row(session, user)
    if user.status in GONE and not user.active:
        return None
    # One flush at the end instead of one before every query: fewer round trips.
    with session.no_autoflush:
        own_policy, vendor = session.connection().execute(_CONTEXT, {
            "b_org": user.organization_id, "b_directory": user.directory_id}).one()
        policy = (policy or current_policy(session)).with_overrides(own_policy or {})
        rec = _take_out(session, user, actor, trigger, received, reason, vendor, lost or [])
        # The mass-event guard runs at commit, under its directory's lock (app/lifecycle/guard).
        guard_on_commit(session, rec, policy)
    stamp_on_commit(session, rec)
    return rec


# FOR NO KEY UPDATE, as users are locked everywhere (app/mapping/reevaluation.py, step 3),
# with the lifecycle state as committed when the lock was granted.
_LOCKED_STATE = ("status", "active", "deleted_at")
_LOCK_USER = (select(*(getattr(User, name) for name in _LOCKED_STATE))
              .where(User.id == bindparam("b_id")).with_for_update(key_share=True))


def _hold_user_row(session: Session, user: User) -> None:
    """The user's row, before its sessions are revoked: an SSO login holds it FOR SHARE
    from its status check to its commit (app/sso/login.py), so the revocation below sees
    the session of every login that saw the user active, and a later login sees it out.
    SCIM writes, the API and the mapping hold it already (no wait then); the CLI and a
    directory's disable take it here, in id order. SQLite has one writer at a time.

    ``user`` is brought up to date with the lifecycle state read under the lock (READ
    COMMITTED reads the row's latest version once the lock is granted), unless this
    transaction changed that state itself and has not written it yet: a caller that read
    the user before a concurrent deprovisioning or reactivation committed sees its outcome,
    not its own stale copy."""
    if session.get_bind().dialect.name != "postgresql":
        return
    row = session.connection().execute(_LOCK_USER, {"b_id": user.id}).first()
    state = inspect(user)
    if row is None or any(state.attrs[name].history.has_changes() for name in _LOCKED_STATE):
        return
    for name, value in zip(_LOCKED_STATE, row, strict=True):
        set_committed_value(user, name, value)


def _take_out(session: Session, user: User, actor: Actor, trigger: Trigger,
              received: datetime, reason: str | None, vendor: Any,
              lost: list[dict[str, Any]]) -> DeprovisionRecord:
    """Revoke, remove grants, flip the status, and write the record, audit and event."""
    remaining = grants_held(session, user)
    held = [*lost, *remaining]
    before = {"active": user.active, "status": user.status.value, "grants": held}
    revoked = revoke_sessions_and_tokens(session, user, received, f"deprovisioned:{trigger}")
    removed = remove_grants(session, user, remaining, actor) + len(lost)
    announce_revoked_sessions(session, user, revoked, actor)
    user.active, user.status, user.updated_at = False, UserStatus.deprovisioned, utcnow()
    move_own(session, user)
    rec = new_record(session, user, actor, trigger=trigger.value, received_at=received,
                     event_id="", vendor=getattr(vendor, "value", vendor), reason=reason)
    event_id = emit(session, organization_id=user.organization_id, type="user.deprovisioned",
                    aggregate_id=user.id,
                    payload=_leaver_payload(session, user, held, trigger, rec.id))
    rec.event_id = event_id
    rec.state_before = before
    rec.state_after = {"active": False, "status": user.status.value, "grants": []}
    rec.sessions_revoked, rec.tokens_revoked = len(revoked.session_ids), revoked.tokens
    rec.grants_removed, rec.applied_at = removed, utcnow()
    record(session, organization_id=user.organization_id, action="user:deprovision",
           actor=actor, subject_type="user", subject_id=user.id,
           data={"trigger": trigger.value, "status_before": before["status"],
                 "record_id": rec.id, "sessions_revoked": rec.sessions_revoked,
                 "tokens_revoked": rec.tokens_revoked, "grants_removed": removed,
                 **({"reason": reason} if reason else {}), **seal_data(rec)})
    return rec


def _leaver_payload(session: Session, user: User, held: list[dict[str, Any]],
                    trigger: Trigger, record_id: str | None) -> dict[str, Any]:
    """What the portal needs for the hand-off: manager, units and roles held."""
    # A user who is its own manager (the top of an HR hierarchy often is) is no one to hand
    # its own approvals to: the leaver is leaving.
    manager = session.get(User, user.manager_id) \
        if user.manager_id and user.manager_id != user.id else None
    if manager is not None and (manager.deleted_at is not None
                                or manager.organization_id != user.organization_id):
        # A SCIM-deleted manager is no one to hand approvals to (RFC 7644 §3.6: it is gone;
        # its reports' `manager` leaves it out too), and its userName may be a placeholder.
        manager = None
    units = {g["unit_id"]: {"id": g["unit_id"], "name": g["unit_name"], "path": g["unit_path"],
                            "kind": g["unit_kind"]} for g in held}
    return {
        "user_id": user.id, "external_id": user.external_id, "user_name": user.user_name,
        "email": user.primary_email, "directory_id": user.directory_id,
        "trigger": trigger.value, "record_id": record_id,
        "manager": None if manager is None else {
            "user_id": manager.id, "user_name": manager.user_name,
            "email": manager.primary_email, "display_name": manager.display_name},
        "units": list(units.values()),
        "roles": [{"unit_id": g["unit_id"], "role_key": g["role_key"],
                   "role_name": g["role_name"], "parameters": g["parameters"]} for g in held],
    }


def delete_user(session: Session, user: User, actor: Actor) -> DeprovisionRecord | None:
    """SCIM DELETE (RFC 7644 §3.6): deprovision, then soft-delete so SCIM no longer sees it.

    The portal hears of every DELETE as ``user.deprovisioned`` with trigger ``scim_delete``:
    from the deprovisioning, or, for a user already out (Entra's DELETE after its soft
    delete), as an event of its own with nothing held and no record (nothing was revoked).
    """
    rec = deprovision_user(session, user, actor, trigger=Trigger.scim_delete)
    if user.status == UserStatus.deleted:
        return rec
    user.status = UserStatus.deleted
    user.deleted_at = utcnow()
    event_id = rec.event_id if rec is not None else emit(
        session, organization_id=user.organization_id, type="user.deprovisioned",
        aggregate_id=user.id, payload=_leaver_payload(session, user, [], Trigger.scim_delete,
                                                      None))
    record(session, organization_id=user.organization_id, action="user:delete", actor=actor,
           subject_type="user", subject_id=user.id,
           data={"record_id": rec.id if rec else None, "event_id": event_id})
    # Its groups' members and its reports' manager, as SCIM serves them, lose it now.
    announce_visibility(session, user, shown=False)
    return rec


def reactivate_user(session: Session, user: User, actor: Actor, *,
                    reason: str | None = None) -> dict[str, Any] | None:
    """active=true (or re-creation within retention): restore under the current mapping.

    Returns what was restored (record id, manual grants), or None when already active;
    Conflict (nothing changed) when the mapping suspended the user (it resumes by the
    mapping alone) or when the user's directory is disabled. A deleted user gets
    back the userName it gave up to a new user, or Conflict (nothing changed) when a live
    user holds that name now (app/directory/user_names.py).
    """
    if user.status == UserStatus.active and user.active:
        return None
    if user.status == UserStatus.suspended and user.active:
        # The mapping's suspension (on_loss = "suspend"), not a deprovisioning: it ends
        # when the mapping gives the user a grant again (app/lifecycle/suspension.py).
        # Reactivating it made the user active with no grant and woke its paused tokens.
        raise Conflict(f"user {user.id!r} is suspended by the mapping (it lost every "
                       "grant), not deprovisioned: it resumes when a mapping rule gives it "
                       "a role again", field="status")
    # Before the mapping lock and this user's row is written (callers that lock the row take
    # both earlier still): Conflict when the directory is disabled, nothing changed.
    hold_directory_for_reactivation(session, user.directory_id)
    share_mapping(session, user.organization_id)
    # Its row next, before its memberships are read and announced (visibility.py): a group
    # write removing one holds the member's row until it commits (app/directory/groups.py).
    # SCIM and the API hold it already; the CLI and a batch restore take it here.
    _hold_user_row(session, user)
    if user.status == UserStatus.active and user.active:
        return None  # a reactivation committed while this one waited for the row
    reclaim_user_name(session, user)
    was = user.status.value
    user.active = True
    user.status = UserStatus.active
    user.deleted_at = None
    user.updated_at = utcnow()
    move_own(session, user)

    def announce(restored: dict[str, Any]) -> None:
        record(session, organization_id=user.organization_id, action="user:reactivate",
               actor=actor, subject_type="user", subject_id=user.id,
               data={"status_before": was, **restored, **({"reason": reason} if reason else {})})
        emit(session, organization_id=user.organization_id, type="user.reactivated",
             aggregate_id=user.id, payload={"user_id": user.id, "external_id": user.external_id,
                                            "user_name": user.user_name, **restored})
        if was == UserStatus.deleted.value:  # back in its groups and its reports' manager
            announce_visibility(session, user, shown=True)

    return restore_access(session, user, actor, announce)


# Built once (building a select costs more than running it on SQLite) and run as Core (an
# id, not an object: every SCIM create with an externalId pays it); served by the index
# ix_users_directory_external_id. FOR UPDATE: two concurrent re-creations restore only once.
# The userName it had when deleted (kept in released_user_name once a new user took it).
_RESTORABLE = (
    select(User.id).where(User.directory_id == bindparam("b_directory"),
                          User.external_id == bindparam("b_external_id"),
                          User.status == UserStatus.deleted,
                          User.deleted_at >= bindparam("b_cutoff"),
                          fold(func.coalesce(User.released_user_name, User.user_name))
                          == fold(bindparam("b_user_name")))
    .order_by(User.deleted_at.desc()).limit(1).with_for_update(key_share=True)
)


def find_restorable(session: Session, directory_id: str, external_id: str, user_name: str,
                    *, now: datetime | None = None) -> User | None:
    """A soft-deleted user of the directory with this externalId and userName (in any
    case), deleted within retention.

    The userName must match too: an externalId alone is not a person's lifetime key (Entra
    maps it from mailNickname by default, which is reused), and a new hire given a leaver's
    alias must not inherit the leaver's groups and grants; they get a user of their own.
    Past ``lifecycle.retention_days`` the identity is due for purge and is not restored,
    even if ``roster lifecycle purge`` has not run yet.
    """
    cutoff = (now or utcnow()) - timedelta(days=current_policy(session).retention_days)
    found = fetch(session.connection(), _RESTORABLE, {
        "b_directory": directory_id, "b_external_id": external_id, "b_user_name": user_name,
        "b_cutoff": cutoff})
    user_id = found[0][0] if found else None
    return session.get(User, user_id) if user_id is not None else None


def restorable_on_create(session: Session, directory_id: str, external_id: str | None,
                         user_name: str, active: bool | None) -> User | None:
    """Entra's "restore": the user a SCIM create (RFC 7644 §3.3) brings back, if any.

    A POST naming the externalId and userName of a user SCIM-deleted within retention, and
    not asking for ``active: false``, restores that user (same id) instead of creating one;
    the caller applies the posted attributes as a PUT with active=true, which reactivates
    it. One indexed query, and none without an externalId.
    """
    if not external_id or active is False:
        return None
    return find_restorable(session, directory_id, external_id, user_name)


def deprovision_directory_users(session: Session, directory_id: str,
                                actor: Actor) -> list[DeprovisionRecord]:
    """A directory was disabled: deprovision every user it still has active."""
    users = session.scalars(select(User).where(User.directory_id == directory_id,
                                               User.status.not_in(GONE)).order_by(User.id))
    return [rec for user in list(users)
            if (rec := deprovision_user(session, user, actor,
                                        trigger=Trigger.directory_disabled)) is not None]


def _record_failure(user_id: str, actor: Actor, trigger: Trigger, reason: str | None,
                    session: Session, error: Exception) -> None:
    """``on_failure``: the deprovisioning's transaction failed; record that, unless it was
    refused on purpose (a rule, a 4xx the caller is told about: a refused mapping apply rolls
    its deprovisionings back so), the user is out anyway (a concurrent request took them out)
    or was new in that transaction."""
    if refused(error):
        return
    user = session.get(User, user_id)
    if user is None or (user.status in GONE and not user.active):
        return
    record_failed_deprovisioning(session, user, actor, trigger=trigger,
                                 error=failure_text(error), reason=reason)


def refused(error: BaseException) -> bool:
    """A refusal on purpose (a domain rule, an error answered 4xx), not a failure."""
    if isinstance(error, DomainError):
        return True
    return any(isinstance(v, int) and 400 <= v < 500
               for v in (getattr(error, "status", None), getattr(error, "code", None)))


def failure_text(error: BaseException) -> str:
    """What went wrong, for the failed record: a database error's first line (never its SQL
    or parameters), else the exception's type and first line."""
    if isinstance(error, DBAPIError):
        first = str(error.orig).strip().splitlines()
        return f"database error {type(error.orig).__name__}: {first[0] if first else ''}"
    first = str(error).strip().splitlines()
    return f"{type(error).__name__}: {first[0]}" if first else type(error).__name__


def record_failed_deprovisioning(session: Session, user: User, actor: Actor, *,
                                 trigger: Trigger, error: str,
                                 reason: str | None = None) -> DeprovisionRecord:
    """After a deprovisioning transaction failed and rolled back, say so in a new one.

    Nothing was revoked (the failed transaction left no trace), so the record has outcome
    "failed", the error, and the user's unchanged state; an alert-worthy audit event too.
    """
    received = actor.received_at or utcnow()
    directory = session.get(Directory, user.directory_id) if user.directory_id else None
    rec = new_record(session, user, actor, trigger=trigger.value, received_at=received,
                     event_id=new_id(), vendor=directory.vendor.value if directory else None,
                     reason=reason)
    state = {"active": user.active, "status": user.status.value}
    rec.state_before, rec.state_after = state, state
    rec.outcome, rec.error, rec.applied_at = "failed", error[:2000], utcnow()
    record(session, organization_id=user.organization_id, action="user:deprovision_failed",
           actor=actor, subject_type="user", subject_id=user.id,
           data={"trigger": trigger.value, "record_id": rec.id, "error": error[:500],
                 **seal_data(rec)})
    return rec
