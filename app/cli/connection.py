"""`roster connection`: SSO connections of an organization, IdP metadata and email domains."""

from __future__ import annotations

from pathlib import Path

import click

from app.cli.base import (
    CliContext,
    command_errors,
    echo_table,
    given_name,
    pass_ctx,
    printable,
    say,
)
from app.directory.directories import get_directory
from app.directory.organizations import get_organization
from app.errors import DomainError
from app.events.endpoints import endpoint_key
from app.sso.connection_metadata import (
    apply_idp_metadata,
    fetch_metadata,
    metadata_text,
    refresh_each,
    url_backed_connections,
)
from app.sso.connections import (
    MATCH_BY,
    POLICIES,
    add_domain,
    create_connection,
    delete_connection,
    get_connection,
    list_connections,
    update_connection,
    verify_domain,
)
from app.sso.saml import SpUrls
from app.sso.subject_links import link_count, unlink_user


@click.group()
def connection() -> None:
    """SSO connections (SAML or OIDC) through which employees sign in."""


@connection.command("create")
@click.option("--org", "org_ref", required=True, help="Organization slug or id.")
@click.option("--name", required=True, callback=given_name,
              help="Connection name, unique in the organization.")
@click.option("--protocol", type=click.Choice(["saml", "oidc"]), default="saml",
              show_default=True, help="SAML 2.0 or OpenID Connect.")
@click.option("--policy", type=click.Choice(POLICIES), default="scim",
              help="scim: the user must be provisioned and active; jit: create/update it.")
@click.option("--match-by", type=click.Choice(MATCH_BY), default="email", show_default=True,
              help="What of the login identifies the provisioned user.")
@click.option("--directory", "directory_ref", default=None,
              help="Directory users are read from (and JIT users written to).")
@click.option("--idp-initiated/--no-idp-initiated", default=False,
              help="Accept unsolicited Responses (IdP-initiated login).")
@click.option("--sign-requests/--no-sign-requests", default=False,
              help="Sign AuthnRequests with the deployment's SP key (sso.sp_key_file, "
                   "required).")
@pass_ctx
def create(ctx: CliContext, org_ref: str, name: str, protocol: str, policy: str,
           match_by: str, directory_ref: str | None, idp_initiated: bool,
           sign_requests: bool) -> None:
    """Create a connection and print the SP URLs to give the IdP admin."""
    with ctx.transaction() as session:
        org = get_organization(session, org_ref)
        directory_id = get_directory(session, directory_ref, org).id \
            if directory_ref is not None else None
        conn = create_connection(session, org, name, protocol, ctx.actor, login_policy=policy,
                                 match_by=match_by, directory_id=directory_id,
                                 allow_idp_initiated=idp_initiated, sign_requests=sign_requests,
                                 sp_key_configured=_sp_key_configured(ctx))
    # Said once the transaction has committed: a failing commit prints only its error.
    say(f"connection {conn.name} created (id {conn.id})")
    if protocol == "saml":
        urls = SpUrls.of(ctx.settings["app"]["base_url"], conn.id)
        say(f"SP entity id / metadata: {urls.entity_id}")
        say(f"ACS (HTTP-POST):         {urls.acs}")


def _sp_key_configured(ctx: CliContext) -> bool:
    """Whether this deployment can sign AuthnRequests (--sign-requests needs it)."""
    return bool(ctx.settings["sso"]["sp_key_file"])


@connection.command("list")
@click.option("--org", "org_ref", required=True, help="Organization slug or id.")
@pass_ctx
def list_(ctx: CliContext, org_ref: str) -> None:
    """List an organization's connections."""
    with ctx.transaction() as session:
        org = get_organization(session, org_ref)
        rows = [{"id": c.id, "name": c.name, "protocol": c.protocol, "policy": c.login_policy,
                 "idp": c.idp_entity_id or (endpoint_key(c.oidc_discovery_url)
                                            if c.oidc_discovery_url else "-"),
                 "certs": len(c.idp_certs), "links": link_count(session, c)}
                for c in list_connections(session, org)]
    echo_table(rows, ["id", "name", "protocol", "policy", "idp", "certs", "links"])


@connection.command("set")
@click.argument("connection_id")
@click.option("--policy", type=click.Choice(POLICIES), default=None,
              help="scim: the user must be provisioned and active; jit: create/update it.")
@click.option("--match-by", type=click.Choice(MATCH_BY), default=None,
              help="What of the login identifies the provisioned user.")
@click.option("--idp-initiated/--no-idp-initiated", default=None,
              help="Accept unsolicited Responses (IdP-initiated login), or stop.")
@click.option("--sign-requests/--no-sign-requests", default=None,
              help="Sign AuthnRequests with the deployment's SP key, or stop.")
@click.option("--enabled/--disabled", default=None,
              help="A disabled connection refuses logins and is not offered by discovery; "
                   "disabling ends the logins made through it, with their tokens.")
@click.option("--directory", "directory_ref", default=None,
              help="Directory users are read from (and JIT users written to).")
@pass_ctx
def set_(ctx: CliContext, connection_id: str, policy: str | None, match_by: str | None,
         idp_initiated: bool | None, sign_requests: bool | None,
         enabled: bool | None, directory_ref: str | None) -> None:
    """Change a connection's login policy, matching, directory, options or state."""
    given = {"login_policy": policy, "match_by": match_by,
             "allow_idp_initiated": idp_initiated, "sign_requests": sign_requests,
             "enabled": enabled}
    with ctx.transaction() as session:
        conn = get_connection(session, connection_id)
        if directory_ref is not None:
            org = get_organization(session, conn.organization_id)
            given["directory_id"] = get_directory(session, directory_ref, org).id
        conn = update_connection(session, conn, ctx.actor,
                                 {k: v for k, v in given.items() if v is not None},
                                 sp_key_configured=_sp_key_configured(ctx))
    say(f"connection {conn.name}: policy {conn.login_policy}, match by "
        f"{conn.match_by}, {'enabled' if conn.enabled else 'disabled'}")


@connection.command("delete")
@click.argument("connection_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def delete(ctx: CliContext, connection_id: str, yes: bool) -> None:
    """Delete a connection (its domains and traces go with it; its logins end, with the
    portal's tokens issued on them, as on a disable)."""
    if not yes:
        with ctx.transaction(readonly=True) as session:
            name = get_connection(session, connection_id).name  # a missing one: no question
        click.confirm(printable(f"Delete the connection {name}, its domains and its traces, "
                                "and end the logins made through it?"), abort=True)
    with ctx.transaction() as session:
        conn = get_connection(session, connection_id)
        name = conn.name
        delete_connection(session, conn, ctx.actor)
    say(f"connection {name} deleted")


@connection.command("unlink")
@click.argument("connection_id")
@click.option("--user", "user_id", required=True, help="Id of the user to untie.")
@pass_ctx
def unlink(ctx: CliContext, connection_id: str, user_id: str) -> None:
    """Untie a user from the IdP subject (OIDC sub, persistent NameID) it signed in with
    through the connection, after a legitimate change at the IdP (an account recreated):
    its next login ties the subject it then signs in with (audit sso:subject:unlink)."""
    with ctx.transaction() as session:
        conn = get_connection(session, connection_id)
        name, subject = conn.name, unlink_user(session, conn, user_id, ctx.actor)
    say(f"user {user_id} unlinked from subject {subject} on connection {name}")


@connection.group("metadata")
def metadata() -> None:
    """SAML IdP metadata: import from a file or an https URL, refresh from the URL."""


@metadata.command("import")
@click.argument("connection_id")
@click.option("--file", "file_", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The IdP metadata XML, as the IdP admin exported it.")
@click.option("--url", default=None, help="https URL of the IdP metadata (kept for refresh).")
@click.option("--entity-id", default=None, help="Pick this IdP in a metadata aggregate.")
@pass_ctx
@command_errors
def import_(ctx: CliContext, connection_id: str, file_: Path | None, url: str | None,
            entity_id: str | None) -> None:
    """Import the IdP's entity id, SSO URL and signing certificates."""
    if bool(file_) == bool(url):
        raise click.UsageError("give exactly one of --file or --url")
    xml = metadata_text(file_.read_bytes()) if file_ else fetch_metadata(
        url or "", private_ok=ctx.settings["sso"]["idp_private_addresses"])
    with ctx.transaction() as session:
        conn = get_connection(session, connection_id)
        if url:
            conn.metadata_url = url
        apply_idp_metadata(session, conn, xml, ctx.actor, entity_id=entity_id)
    say(f"imported {conn.idp_entity_id}: {len(conn.idp_certs)} signing "
        f"certificate(s), SSO {conn.idp_sso_url}")


@metadata.command("refresh")
@click.argument("connection_id", required=False)
@click.option("--all", "all_", is_flag=True,
              help="Every SAML connection with a metadata URL (run it from cron).")
@pass_ctx
@command_errors
def refresh(ctx: CliContext, connection_id: str | None, all_: bool) -> None:
    """Re-read the IdP metadata from the connection's https URL (no lock held while fetching)."""
    if bool(connection_id) == all_:
        raise click.UsageError("give a CONNECTION_ID or --all")
    if connection_id:
        ids = [connection_id]
    else:
        with ctx.transaction() as session:
            ids = url_backed_connections(session)
    failed = 0
    private_ok = ctx.settings["sso"]["idp_private_addresses"]
    for cid, outcome in refresh_each(ctx.db, ids, ctx.actor, private_ok=private_ok):
        if isinstance(outcome, DomainError):
            if not all_:
                raise outcome
            failed += 1
            say(f"{cid}: not refreshed: {outcome.detail}", err=True)
            continue
        say(f"refreshed {outcome.idp_entity_id}: {len(outcome.idp_certs)} certificate(s)")
    if failed:
        raise click.ClickException(f"{failed} of {len(ids)} connection(s) not refreshed")


@connection.group("domain")
def domain() -> None:
    """Email domains that home-realm discovery routes to a connection."""


@domain.command("add")
@click.argument("connection_id")
@click.argument("name")
@pass_ctx
def domain_add(ctx: CliContext, connection_id: str, name: str) -> None:
    """Attach an email domain (not routed until verified)."""
    with ctx.transaction() as session:
        row = add_domain(session, get_connection(session, connection_id), name, ctx.actor)
    say(f"domain {row.domain} added (unverified)")


@domain.command("verify")
@click.argument("connection_id")
@click.argument("name")
@pass_ctx
def domain_verify(ctx: CliContext, connection_id: str, name: str) -> None:
    """Mark a domain verified by the operator: discovery routes it from now on."""
    with ctx.transaction() as session:
        row = verify_domain(session, get_connection(session, connection_id), name, ctx.actor)
    say(f"domain {row.domain} verified")
