"""`roster demo`: a demo organization with units, roles and a directory, and a fresh token."""

from __future__ import annotations

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import Actor
from app.cli.base import CliContext, pass_ctx
from app.cli.directory import scim_base_url
from app.cli.org import ROLES_FILE
from app.directory.directories import create_directory
from app.directory.organizations import add_unit, create_organization
from app.directory.tokens import issue_token, list_tokens, revoke_token
from app.mapping.catalog import load_catalog
from app.models import Directory, Organization

DEMO_UNITS = [
    ("Departments", "department", None), ("Engineering", "department", "Departments"),
    ("Sales", "department", "Departments"), ("Finance", "department", "Departments"),
    ("Locations", "location", None), ("Berlin", "location", "Locations"),
    ("Tokyo", "location", "Locations"), ("Cost centers", "cost_center", None),
    ("CC-4711", "cost_center", "Cost centers"),
]


@click.command()
@pass_ctx
def demo(ctx: CliContext) -> None:
    """Create (once) the demo organization and print its SCIM URL and a new token."""
    slug = ctx.settings["demo"]["org_slug"]
    tokens = ctx.settings["tokens"]
    with ctx.transaction() as session:
        organization = session.scalar(select(Organization).where(Organization.slug == slug))
        if organization is None:
            organization = _create(session, slug, ctx.actor)
        directory = session.scalar(
            select(Directory).where(Directory.organization_id == organization.id)
        )
        if directory is None:
            directory = create_directory(session, organization, "okta", "okta", ctx.actor)
        for old in list_tokens(session, directory):
            if old.revoked_at is None:
                revoke_token(session, directory, old.id, ctx.actor)
        _token, plaintext = issue_token(session, directory, ctx.actor,
                                        days=tokens["scim_token_days"],
                                        max_valid=tokens["max_valid_per_directory"])
    click.echo(f"Demo organization: {slug} (id {organization.id})")
    click.echo(f"SCIM base URL:     {scim_base_url(ctx)}")
    click.echo(f"SCIM token:        {plaintext}")
    click.echo(f"Try: curl -H 'Authorization: Bearer {plaintext}' "
               f"{scim_base_url(ctx)}/ServiceProviderConfig")


def _create(session: Session, slug: str, actor: Actor) -> Organization:
    organization = create_organization(session, slug, "Demo Corp", load_catalog(ROLES_FILE),
                                       actor)
    for name, kind, parent in DEMO_UNITS:
        add_unit(session, organization, name, kind, parent, actor)
    return organization
