"""`roster connection oidc`: the OIDC relying-party settings of a connection (issue 8)."""

from __future__ import annotations

import sys

import click

from app.cli.base import CliContext, command_errors, pass_ctx, say
from app.cli.connection import connection
from app.errors import InvalidInput
from app.sso.connections import get_connection
from app.sso.idp_fetch import check_public
from app.sso.oidc_config import (
    algorithms_of,
    check_url,
    configure_oidc,
    groups_claim_of,
    rekey_client_secrets,
    rekey_login_secrets,
)
from app.sso.oidc_rp import ProviderCache, callback_url, logged_out_url
from app.sso.outcome import LoginFailed


@connection.command("oidc")
@click.argument("connection_id")
@click.option("--discovery-url", default=None,
              help="https URL of the IdP's /.well-known/openid-configuration.")
@click.option("--client-id", default=None, help="The client id the IdP gave Roster.")
@click.option("--client-secret", default=None, envvar="ROSTER_OIDC_CLIENT_SECRET",
              help="Client secret (better: the ROSTER_OIDC_CLIENT_SECRET variable or "
                   "--client-secret-stdin, so it stays out of the process list).")
@click.option("--client-secret-stdin", is_flag=True, help="Read the client secret from stdin.")
@click.option("--scopes", default=None, help='Scopes to ask for, e.g. "openid email profile".')
@click.option("--groups-claim", default=None, help="Claim carrying group names (groups).")
@click.option("--algorithms", default=None,
              help="Comma-separated signature allow-list, e.g. RS256,ES256 (never none).")
@click.option("--check/--no-check", default=True,
              help="Read the IdP's discovery document now and fail if it is not usable.")
@pass_ctx
@command_errors
def oidc(ctx: CliContext, connection_id: str, discovery_url: str | None,
         client_id: str | None, client_secret: str | None, client_secret_stdin: bool,
         scopes: str | None, groups_claim: str | None, algorithms: str | None,
         check: bool) -> None:
    """Set discovery URL, client, scopes, groups claim and algorithms; print the redirect URI."""
    if client_secret_stdin:
        client_secret = sys.stdin.readline().strip()
    target = discovery_url
    if target is None:
        with ctx.transaction() as session:
            target = get_connection(session, connection_id).oidc_discovery_url
    issuer = None
    if discovery_url:
        check_public(check_url(discovery_url, "discovery_url"), "discovery_url",
                     private_ok=ctx.settings["sso"]["idp_private_addresses"])
    if check and target:
        # Read the IdP before the write transaction: no write lock waits on the network.
        try:
            cache = ProviderCache(private_ok=ctx.settings["sso"]["idp_private_addresses"])
            issuer = cache.provider(check_url(target, "discovery_url")).issuer
        except LoginFailed as exc:
            raise InvalidInput(f"IdP not usable ({exc.reason}): {exc.detail}") from None
    with ctx.transaction() as session:
        conn = configure_oidc(
            session, get_connection(session, connection_id), ctx.actor,
            secret_key=ctx.settings["app"]["secret_key"], discovery_url=discovery_url,
            client_id=client_id, client_secret=client_secret or None, scopes=scopes,
            groups_claim=groups_claim,
            algorithms=algorithms.split(",") if algorithms is not None else None)
    # Said once the transaction has committed: a failing commit prints only its error.
    if issuer:
        say(f"issuer:        {issuer}")
    base = ctx.settings["app"]["base_url"]
    say(f"redirect URI:  {callback_url(base, conn.id)}")
    say(f"post-logout redirect URI: {logged_out_url(base, conn.id)}")
    say(f"algorithms:    {', '.join(algorithms_of(conn))}")
    say(f"groups claim:  {groups_claim_of(conn)}")
    say(f"client secret: {'set' if conn.oidc_client_secret_enc else 'NOT SET'}")


@connection.command("rekey")
@pass_ctx
@command_errors
def rekey(ctx: CliContext) -> None:
    """After a rotation of app.secret_key: re-encrypt every stored OIDC client secret, the
    PKCE verifiers of login attempts in flight and the IdP ID tokens kept for logouts with
    the new key (app.previous_secret_key opens the old ones), then the previous key can go."""
    keys = ctx.settings["app"]
    if not keys["secret_key"]:
        raise click.ClickException("app.secret_key is not set")
    with ctx.transaction() as session:
        done, unreadable = rekey_client_secrets(session, ctx.actor,
                                                secret_key=keys["secret_key"],
                                                previous=keys["previous_secret_key"])
        verifiers, id_tokens = rekey_login_secrets(session, secret_key=keys["secret_key"],
                                                   previous=keys["previous_secret_key"])
    say(f"re-encrypted the OIDC client secrets of {done} connection(s) with the "
        "current app.secret_key")
    say(f"re-encrypted the PKCE verifiers of {verifiers} login attempt(s) in flight "
        f"and the IdP ID tokens of {id_tokens} login(s)")
    if unreadable:
        raise click.ClickException(
            f"{len(unreadable)} connection(s) hold a client secret neither app.secret_key "
            f"nor app.previous_secret_key opens; set it again with `roster connection oidc "
            f"ID --client-secret-stdin`: {', '.join(unreadable)}")
