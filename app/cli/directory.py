"""`roster directory`: SCIM connections and their bearer tokens."""

from __future__ import annotations

from datetime import datetime

import click
from sqlalchemy.orm import Session

from app.cli.base import (
    CliContext,
    echo_table,
    given_name,
    listed_ref,
    pass_ctx,
    printable,
    say,
)
from app.db import utcnow
from app.directory.directories import (
    create_directory,
    get_directory,
    list_directories,
    set_directory_status,
)
from app.directory.organizations import get_organization
from app.directory.tokens import is_valid, issue_token, list_tokens, revoke_token
from app.errors import NotFound
from app.models import Directory
from app.models.directory import Vendor


@click.group()
def directory() -> None:
    """Directories: SCIM connections from an IdP into an organization."""


def scim_base_url(ctx: CliContext) -> str:
    """The SCIM base URL an IdP admin pastes into Okta or Entra."""
    return f"{ctx.settings['app']['base_url'].rstrip('/')}/scim/v2"


@directory.command("create")
@click.option("--org", "org_ref", required=True, help="Organization slug or id.")
@click.option("--vendor", required=True, type=click.Choice([v.value for v in Vendor]),
              help="The IdP, whose SCIM dialect Roster then expects.")
@click.option("--name", default=None, callback=given_name,
              help="Directory name (default: the vendor).")
@pass_ctx
def create(ctx: CliContext, org_ref: str, vendor: str, name: str | None) -> None:
    """Create a directory and print its SCIM base URL and first token (shown once)."""
    tokens = ctx.settings["tokens"]
    with ctx.transaction() as session:
        organization = get_organization(session, org_ref)
        new = create_directory(session, organization, name or vendor, vendor, ctx.actor)
        _token, plaintext = issue_token(session, new, ctx.actor, days=tokens["scim_token_days"],
                                        max_valid=tokens["max_valid_per_directory"])
    say(f"directory {new.name} created (id {new.id})")
    say(f"SCIM base URL: {scim_base_url(ctx)}")
    say(f"SCIM token:    {plaintext}")
    say("The token is shown once; store it in your IdP now.")


@directory.command("list")
@click.option("--org", "org_ref", required=True, help="Organization slug or id.")
@pass_ctx
def list_(ctx: CliContext, org_ref: str) -> None:
    """List an organization's directories."""
    with ctx.transaction() as session:
        organization = get_organization(session, org_ref)
        rows = [{"name": d.name, "vendor": d.vendor.value, "status": d.status.value, "id": d.id}
                for d in list_directories(session, organization)]
    echo_table(rows, ["name", "vendor", "status", "id"])


@directory.group("token")
def token() -> None:
    """Bearer tokens of a directory: rotate with overlap, revoke, list."""


_directory_option = click.option("--directory", "directory_ref", required=True,
                                  help="Directory id (or name, with --org).")
org_option = click.option("--org", "org_ref", default=None,
                           help="Organization slug or id, to name the directory by name.")


def find_directory(session: Session, directory_ref: str, org_ref: str | None) -> Directory:
    """A directory by id, or by name within the organization ``org_ref`` names. Without
    ``org_ref`` a name names nothing: the error says so (``directory list`` shows names)."""
    organization = get_organization(session, org_ref) if org_ref else None
    try:
        return get_directory(session, directory_ref, organization)
    except NotFound as exc:
        if organization is not None:
            raise
        raise NotFound(f"{exc.detail} (a directory is named by its id, or by its name with "
                       "--org)", field=exc.field) from None


@token.command("rotate")
@_directory_option
@org_option
@pass_ctx
def rotate(ctx: CliContext, directory_ref: str, org_ref: str | None) -> None:
    """Issue a new token; the old one keeps working until you revoke it."""
    tokens = ctx.settings["tokens"]
    with ctx.transaction() as session:
        found = find_directory(session, directory_ref, org_ref)
        new, plaintext = issue_token(session, found, ctx.actor,
                                     days=tokens["scim_token_days"],
                                     max_valid=tokens["max_valid_per_directory"])
    say(f"new token {new.prefix}... (id {new.id})")
    say(f"SCIM token: {plaintext}")
    say("Update the IdP, then revoke the old token with `roster directory token revoke`.")


@token.command("revoke")
@_directory_option
@org_option
@click.argument("token_ref")
@pass_ctx
def revoke(ctx: CliContext, directory_ref: str, org_ref: str | None, token_ref: str) -> None:
    """Revoke TOKEN_REF (its id or prefix, as `token list` prints it); it stops at once."""
    with ctx.transaction() as session:
        found = find_directory(session, directory_ref, org_ref)
        revoked = revoke_token(session, found, listed_ref(token_ref), ctx.actor)
    say(f"token {revoked.prefix}... revoked")


@token.command("list")
@_directory_option
@org_option
@pass_ctx
def list_tokens_(ctx: CliContext, directory_ref: str, org_ref: str | None) -> None:
    """List a directory's tokens (prefixes only; secrets are never stored)."""
    now = utcnow()
    with ctx.transaction() as session:
        found = find_directory(session, directory_ref, org_ref)
        rows = [{
            "id": t.id, "prefix": f"{t.prefix}...",
            "state": "valid" if is_valid(t, now) else ("revoked" if t.revoked_at else "expired"),
            "created": _fmt(t.created_at), "last_used": _fmt(t.last_used_at),
            "expires": _fmt(t.expires_at),
        } for t in list_tokens(session, found)]
    echo_table(rows, ["id", "prefix", "state", "created", "last_used", "expires"])


def _fmt(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


@directory.command("disable")
@_directory_option
@org_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def disable(ctx: CliContext, directory_ref: str, org_ref: str | None, yes: bool) -> None:
    """Disable a directory: its tokens stop working and every user it still has active is
    deprovisioned (trigger directory_disabled), as POST .../directories/ID/disable does."""
    if not yes:
        with ctx.transaction(readonly=True) as session:
            name = find_directory(session, directory_ref, org_ref).name  # missing: no question
        click.confirm(printable(f"Disabling deprovisions every active user of directory "
                                f"{name}. Go on?"), abort=True)
    with ctx.transaction() as session:
        found = find_directory(session, directory_ref, org_ref)
        set_directory_status(session, found, "disabled", ctx.actor)
    say(f"directory {found.name} disabled (id {found.id}); its users are "
        "deprovisioned (`roster lifecycle batches` lists a mass deprovisioning)")


@directory.command("enable")
@_directory_option
@org_option
@pass_ctx
def enable(ctx: CliContext, directory_ref: str, org_ref: str | None) -> None:
    """Enable a disabled directory: its tokens work again. Its users stay deprovisioned until
    the IdP pushes them again or `roster lifecycle reactivate` / `restore` brings them back."""
    with ctx.transaction() as session:
        found = find_directory(session, directory_ref, org_ref)
        set_directory_status(session, found, "active", ctx.actor)
    say(f"directory {found.name} enabled (id {found.id})")
