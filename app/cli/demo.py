"""`roster demo`: a demo organization with units, roles and a directory, and a fresh token."""

from __future__ import annotations

import os
from pathlib import Path

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import Actor
from app.cli.base import CliContext, pass_ctx
from app.cli.directory import scim_base_url
from app.cli.org import ROLES_FILE
from app.directory.directories import create_directory
from app.directory.organizations import add_unit, create_organization
from app.directory.tokens import hash_token, issue_token, revoke_token, valid_tokens
from app.mapping.catalog import load_catalog
from app.models import Directory, Organization

DEMO_DIRECTORY = "okta"
DEMO_UNITS = [
    ("Departments", "department", None), ("Engineering", "department", "Departments"),
    ("Sales", "department", "Departments"), ("Finance", "department", "Departments"),
    ("Locations", "location", None), ("Berlin", "location", "Locations"),
    ("Tokyo", "location", "Locations"), ("Cost centers", "cost_center", None),
    ("CC-4711", "cost_center", "Cost centers"),
]


@click.command()
@click.option("--token-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Keep the token in this file (mode 0600) and print it again while it "
                   "stays valid, so restarts do not change it (script/server: var/demo-token).")
@pass_ctx
def demo(ctx: CliContext, token_file: Path | None) -> None:
    """Create (once) the demo organization and print its SCIM URL and a token: a new one,
    which revokes the earlier ones, unless --token-file holds one still valid."""
    slug = ctx.settings["demo"]["org_slug"]
    tokens = ctx.settings["tokens"]
    try:
        kept = _read(token_file)
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read the token file {token_file}: "
                                   f"{getattr(exc, 'strerror', None) or 'not UTF-8 text'}"
                                   ) from None
    with ctx.transaction() as session:
        organization = session.scalar(select(Organization).where(Organization.slug == slug))
        if organization is None:
            organization = _create(session, slug, ctx.actor)
        directory = session.scalar(
            select(Directory).where(Directory.organization_id == organization.id,
                                    Directory.name == DEMO_DIRECTORY))
        if directory is None:
            directory = create_directory(session, organization, DEMO_DIRECTORY, "okta",
                                         ctx.actor)
        valid = valid_tokens(session, directory)
        if kept is None or hash_token(kept) not in {t.token_hash for t in valid}:
            for old in valid:
                revoke_token(session, directory, old.id, ctx.actor)
            _token, kept = issue_token(session, directory, ctx.actor,
                                       days=tokens["scim_token_days"],
                                       max_valid=tokens["max_valid_per_directory"])
            try:
                _write(token_file, kept)
            except OSError as exc:  # raised in the transaction: no token revoked or issued
                raise click.ClickException(
                    f"cannot write the token file {token_file}: {exc.strerror}; nothing "
                    "changed") from None
    click.echo(f"Demo organization: {slug} (id {organization.id})")
    click.echo(f"SCIM base URL:     {scim_base_url(ctx)}")
    click.echo(f"SCIM token:        {kept}")
    click.echo(f"Try: curl -H 'Authorization: Bearer {kept}' "
               f"{scim_base_url(ctx)}/ServiceProviderConfig")


def _read(token_file: Path | None) -> str | None:
    if token_file is None or not token_file.exists():
        return None
    return token_file.read_text().strip() or None


def _write(token_file: Path | None, plaintext: str) -> None:
    """Write the token readable by its owner only, never half-written (a rename)."""
    if token_file is None:
        return
    partial = token_file.with_name(token_file.name + ".tmp")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(plaintext + "\n")
    partial.replace(token_file)


def _create(session: Session, slug: str, actor: Actor) -> Organization:
    organization = create_organization(session, slug, "Demo Corp", load_catalog(ROLES_FILE),
                                       actor)
    for name, kind, parent in DEMO_UNITS:
        add_unit(session, organization, name, kind, parent, actor)
    return organization
