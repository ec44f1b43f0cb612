"""`roster apikey`: API keys of operators, customer admins, auditors and the portal."""

from __future__ import annotations

from datetime import datetime

import click

from app.cli.base import CliContext, echo_table, given_name, listed_ref, pass_ctx, say
from app.db import utcnow
from app.directory.apikeys import (
    create_key,
    get_key,
    key_state,
    list_keys,
    parse_expiry,
    revoke_key,
    rotate_key,
)
from app.directory.organizations import get_organization
from app.errors import DomainError
from app.models.api import ApiRole


@click.group()
def apikey() -> None:
    """API keys for /api/v1 (shown once; only a hash is stored)."""


def _expiry(value: str | None) -> datetime | None:
    try:
        return parse_expiry(value)
    except DomainError as exc:
        raise click.BadParameter(exc.detail, param_hint="--expires") from None


@apikey.command("create")
@click.option("--role", required=True, type=click.Choice([r.value for r in ApiRole]),
              help="operator (deployment-wide) or admin/auditor/portal (needs --org).")
@click.option("--org", "org_ref", default=None, help="Organization slug or id.")
@click.option("--expires", default=None, help="90d, 12h, 2w or a date like 2027-01-01.")
@click.option("--name", default=None, callback=given_name,
              help="What the key is for (shown in listings).")
@pass_ctx
def create(ctx: CliContext, role: str, org_ref: str | None, expires: str | None,
           name: str | None) -> None:
    """Create an API key and print it once."""
    expires_at = _expiry(expires)
    with ctx.transaction() as session:
        organization = get_organization(session, org_ref) if org_ref else None
        key, plaintext = create_key(session, role, organization, ctx.actor, name=name or "",
                                    expires_at=expires_at)
    scope = f"organization {organization.slug}" if organization else "every organization"
    say(f"{role} key {key.prefix}... created for {scope} (id {key.id})")
    say(f"API key: {plaintext}")
    say("The key is shown once; store it now.")


@apikey.command("list")
@click.option("--org", "org_ref", default=None, help="Only keys of this organization.")
@pass_ctx
def list_(ctx: CliContext, org_ref: str | None) -> None:
    """List API keys (prefixes only; keys are never stored)."""
    now = utcnow()
    with ctx.transaction() as session:
        organization = get_organization(session, org_ref) if org_ref else None
        rows = [{
            "id": k.id, "prefix": f"{k.prefix}...", "role": k.role.value,
            "org": k.organization_id or "*", "name": k.name, "state": key_state(k, now),
            "last_used": _fmt(k.last_used_at), "expires": _fmt(k.expires_at),
        } for k in list_keys(session, organization)]
    echo_table(rows, ["id", "prefix", "role", "org", "name", "state", "last_used", "expires"])


@apikey.command("revoke")
@click.argument("key_ref")
@pass_ctx
def revoke(ctx: CliContext, key_ref: str) -> None:
    """Revoke KEY_REF (its id or prefix, as `apikey list` prints it); it stops at once."""
    with ctx.transaction() as session:
        key = revoke_key(session, get_key(session, listed_ref(key_ref)), ctx.actor)
    say(f"API key {key.prefix}... revoked")


@apikey.command("rotate")
@click.argument("key_ref")
@click.option("--expires", default=None,
              help="Expiry of the new key (default: the old one's; needed when it has expired).")
@pass_ctx
def rotate(ctx: CliContext, key_ref: str, expires: str | None) -> None:
    """Replace KEY_REF with a new key (same role, organization, name) and revoke it."""
    expires_at = _expiry(expires)
    with ctx.transaction() as session:
        old = get_key(session, listed_ref(key_ref))
        new, plaintext = rotate_key(session, old, ctx.actor, expires_at=expires_at)
    say(f"API key {old.prefix}... revoked; new key {new.prefix}... (id {new.id})")
    say(f"API key: {plaintext}")


def _fmt(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"
