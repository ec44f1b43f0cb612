"""`roster org` and `roster unit`: tenants and their unit tree."""

from __future__ import annotations

import click

from app.cli.base import CliContext, echo_table, given_name, pass_ctx, say
from app.directory.organizations import (
    create_organization,
    get_organization,
    list_organizations,
    list_units,
)
from app.mapping.catalog import load_catalog
from app.mapping.new_units import add_unit_for_rules
from app.models.organization import UnitKind
from app.settings import ROOT

ROLES_FILE = ROOT / "config" / "roles.toml"


@click.group()
def org() -> None:
    """Organizations: the customer business accounts (tenants)."""


@org.command("create")
@click.argument("slug")
@click.option("--name", default=None, callback=given_name,
              help="Display name (default: the slug).")
@pass_ctx
def create(ctx: CliContext, slug: str, name: str | None) -> None:
    """Create organization SLUG and seed its role catalog from config/roles.toml."""
    catalog = load_catalog(ROLES_FILE)
    with ctx.transaction() as session:
        organization = create_organization(session, slug, name or "", catalog, ctx.actor)
    # Said once the transaction has committed: a failing commit prints only its error.
    say(f"organization {organization.slug} created (id {organization.id}, "
        f"{len(catalog)} roles)")


@org.command("list")
@pass_ctx
def list_(ctx: CliContext) -> None:
    """List organizations."""
    with ctx.transaction() as session:
        rows = [{"slug": o.slug, "name": o.name, "id": o.id} for o in list_organizations(session)]
    echo_table(rows, ["slug", "name", "id"])


@click.group()
def unit() -> None:
    """Units: departments, cost centers, teams and locations of an organization."""


@unit.command("add")
@click.option("--org", "org_ref", required=True, help="Organization slug or id.")
@click.option("--name", required=True, callback=given_name, help="Unit name (no '/').")
@click.option("--kind", required=True, type=click.Choice([k.value for k in UnitKind]),
              help="What the unit is.")
@click.option("--parent", default=None, help="Parent unit path (A/B) or id; omit for a root.")
@pass_ctx
def add(ctx: CliContext, org_ref: str, name: str, kind: str, parent: str | None) -> None:
    """Add a unit to an organization's tree; users a rule now grants in it get the grant."""
    with ctx.transaction() as session:
        organization = get_organization(session, org_ref)
        new, summary = add_unit_for_rules(session, organization, name, kind, parent,
                                          ctx.actor)
    say(f"unit {new.path} ({new.kind.value}) created (id {new.id})")
    if summary is not None:
        say(f"re-evaluated {summary.users} user(s): {summary.added} grant(s) added, "
            f"{summary.removed} removed, {summary.updated} updated")


@unit.command("list")
@click.option("--org", "org_ref", required=True, help="Organization slug or id.")
@pass_ctx
def list_units_(ctx: CliContext, org_ref: str) -> None:
    """List an organization's units as a tree, by path."""
    with ctx.transaction() as session:
        organization = get_organization(session, org_ref)
        rows = [{"path": u.path, "kind": u.kind.value, "id": u.id}
                for u in list_units(session, organization)]
    echo_table(rows, ["path", "kind", "id"])
