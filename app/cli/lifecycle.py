"""`roster lifecycle`: operator deprovisioning, mass-event batches and their undo, purge."""

from __future__ import annotations

import click
from sqlalchemy import literal, select
from sqlalchemy.orm import Session

from app.cli.base import DAYS, CliContext, command_errors, echo_table, pass_ctx, say
from app.directory.organizations import get_organization
from app.errors import Conflict, NotFound
from app.lifecycle import Trigger, deprovision_user, reactivate_user
from app.lifecycle.batches import list_batches, restore_batch
from app.lifecycle.purge import purge_in_batches
from app.models import User
from app.sql import fold
from app.visible_names import text_problem


@click.group()
def lifecycle() -> None:
    """Deprovision and reactivate users, undo mass-deprovisioning batches, purge."""


# Users listed when a userName names several (one per directory of the organization).
_NAMESAKES_SHOWN = 10


def _user(session: Session, org_ref: str, user_ref: str) -> User:
    """The organization's user USER_REF names: its id, or its userName, compared in any case
    (RFC 7643 §4.1.1: case-insensitive). An organization may have several directories (two
    IdPs during a migration), each with its own holder of a userName: then the name is
    refused, naming each holder, rather than one of them picked (it may be a copy already
    out while the live one stays in): give the id."""
    org = get_organization(session, org_ref)
    users = list(session.scalars(select(User).where(
        User.organization_id == org.id,
        (User.id == user_ref) | (fold(User.user_name) == fold(literal(user_ref))))
        .order_by(User.id).limit(_NAMESAKES_SHOWN + 1)))
    by_id = [user for user in users if user.id == user_ref]
    if by_id:
        return by_id[0]
    if not users:
        raise NotFound(f"no user {user_ref} in {org.slug}")
    if len(users) > 1:
        holders = ", ".join(f"{user.id} (directory {user.directory_id}, {user.status.value})"
                            for user in users[:_NAMESAKES_SHOWN])
        raise Conflict(f"several users of {org.slug} are named {user_ref}: {holders}; "
                       f"give the id of the one meant")
    return users[0]


# The same bound as the API's "reason" field (LifecycleActionSchema).
REASON_MAX = 500


def _reason(value: str | None) -> str | None:
    """The operator's words, trimmed; 1-500 characters (as the API accepts), or none."""
    if value is None:
        return None
    value = value.strip()
    if not 1 <= len(value) <= REASON_MAX:
        raise click.BadParameter(f"must be 1 to {REASON_MAX} characters",
                                 param_hint="--reason")
    if (problem := text_problem(value)) is not None:
        raise click.BadParameter(f"must {problem}", param_hint="--reason")
    return value


_REASON_HELP = "Why (kept in the audit event; on the deprovisioning record and its receipt)."


@lifecycle.command("deprovision")
@click.option("--org", "org_ref", required=True, help="Organization slug or id.")
@click.option("--reason", default=None, help=_REASON_HELP)
@click.argument("user_ref")
@pass_ctx
@command_errors
def deprovision(ctx: CliContext, org_ref: str, user_ref: str, reason: str | None) -> None:
    """Take USER_REF (id or userName) out now: sessions, tokens and grants revoked."""
    reason = _reason(reason)
    with ctx.transaction() as session:
        rec = deprovision_user(session, _user(session, org_ref, user_ref), ctx.actor,
                               trigger=Trigger.operator, reason=reason)
    say(f"deprovisioned (record {rec.id})" if rec else "already deprovisioned")


@lifecycle.command("reactivate")
@click.option("--org", "org_ref", required=True, help="Organization slug or id.")
@click.option("--reason", default=None, help="Why (kept in the audit event).")
@click.argument("user_ref")
@pass_ctx
@command_errors
def reactivate(ctx: CliContext, org_ref: str, user_ref: str, reason: str | None) -> None:
    """Reactivate USER_REF under the current mapping (manual grants come back too)."""
    reason = _reason(reason)
    with ctx.transaction() as session:
        restored = reactivate_user(session, _user(session, org_ref, user_ref), ctx.actor,
                                   reason=reason)
    say("reactivated" if restored is not None else "already active")


@lifecycle.command("batches")
@click.option("--org", "org_ref", default=None,
              help="Only this organization's batches (slug or id).")
@pass_ctx
@command_errors
def batches(ctx: CliContext, org_ref: str | None) -> None:
    """List mass-deprovisioning batches (newest first)."""
    with ctx.transaction() as session:
        org_id = get_organization(session, org_ref).id if org_ref else None
        rows = [{"id": b.id, "directory": b.directory_id, "count": b.count,
                 "of": b.directory_users, "opened": f"{b.opened_at:%Y-%m-%d %H:%M}",
                 "restored": f"{b.restored_at:%Y-%m-%d %H:%M}" if b.restored_at else "-"}
                for b in list_batches(session, org_id)]
    echo_table(rows, ["id", "directory", "count", "of", "opened", "restored"])


@lifecycle.command("restore")
@click.option("--batch", "batch_id", required=True, help="Batch id from `lifecycle batches`.")
@pass_ctx
@command_errors
def restore(ctx: CliContext, batch_id: str) -> None:
    """Undo a mass-deprovisioning batch: reactivate its users under the current mapping."""
    with ctx.transaction() as session:
        done = restore_batch(session, batch_id, ctx.actor)
    say(f"batch {batch_id}: {len(done.restored)} user(s) reactivated")
    for user_id, why in done.skipped.items():
        say(f"  skipped {user_id}: {why}")


@lifecycle.command("purge")
@click.option("--retention-days", type=DAYS, default=None,
              help="Override lifecycle.retention_days.")
@click.option("--deprovisioned-retention-days", type=DAYS, default=None,
              help="Override lifecycle.deprovisioned_retention_days (0: keep them).")
@pass_ctx
@command_errors
def purge(ctx: CliContext, retention_days: int | None,
          deprovisioned_retention_days: int | None) -> None:
    """Purge identity data of users soft-deleted (or, when configured, deprovisioned)
    longer ago than the retention period."""
    settings = ctx.settings["lifecycle"]
    days = settings["retention_days"] if retention_days is None else retention_days
    out_days = settings["deprovisioned_retention_days"] \
        if deprovisioned_retention_days is None else deprovisioned_retention_days
    if days < 0 or out_days < 0:
        raise click.BadParameter("retention must not be negative")
    count = purge_in_batches(ctx.db, ctx.actor, retention_days=days,
                             deprovisioned_days=out_days,
                             batch_size=ctx.settings["events"]["purge_batch_size"]).purged
    also = f" or deprovisioned more than {out_days} day(s) ago" if out_days else ""
    say(f"purged {count} user(s) deleted more than {days} day(s) ago{also}")
