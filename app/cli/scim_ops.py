"""`roster directory requests|report|oauth`: the flight recorder, the dialect report and
OAuth client credentials of a directory (issue 5)."""

from __future__ import annotations

from collections.abc import Callable

import click

from app.cli.base import CliContext, echo_table, pass_ctx, say
from app.cli.directory import directory, find_directory, org_option, scim_base_url
from app.directory.directories import get_directory
from app.directory.oauth_clients import create_client, revoke_client, rotate_secret
from app.models.scim_ops import OAuthClient
from app.scim.dialect_report import dialect_report
from app.scim.recorder import describe, list_requests


@directory.command("requests")
@click.argument("directory_ref")
@org_option
@click.option("--failed", is_flag=True, help="Only requests answered with status >= 400.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000),
              help="At most this many requests, newest first.")
@click.option("--bodies", is_flag=True, help="Print the (redacted) request and response bodies.")
@pass_ctx
def requests_(ctx: CliContext, directory_ref: str, org_ref: str | None, failed: bool,
              limit: int, bodies: bool) -> None:
    """Show what DIRECTORY_REF's IdP sent recently, newest first (the flight recorder);
    DIRECTORY_REF is its id, or its name with --org."""
    with ctx.transaction() as session:
        found = find_directory(session, directory_ref, org_ref)
        records = [describe(r) for r in list_requests(session, found.id, failed=failed,
                                                      limit=limit)]
    rows = [{"at": r["at"][:19], "method": r["method"],
             "path": r["path"] + (f"?{r['query']}" if r["query"] else ""),
             "status": r["status"], "ms": f"{r['duration_ms']:.1f}",
             "notes": ",".join(r["notes"]) or "-"} for r in records]
    echo_table(rows, ["at", "method", "path", "status", "ms", "notes"])
    if bodies:
        for r in records:
            say(f"\n#{r['id']} {r['method']} {r['path']} -> {r['status']}")
            say(f"  request:  {r['request_body'] or '-'}")
            say(f"  response: {r['response_body'] or '-'}")


@directory.command("report")
@click.argument("directory_ref")
@org_option
@pass_ctx
def report(ctx: CliContext, directory_ref: str, org_ref: str | None) -> None:
    """Which IdP dialect DIRECTORY_REF speaks, in plain words, with every quirk counted;
    DIRECTORY_REF is its id, or its name with --org."""
    with ctx.transaction() as session:
        found = find_directory(session, directory_ref, org_ref)
        data = dialect_report(session, found.id)
    say(f"directory {found.name} ({found.id}): {data['dialect']}")
    say(data["summary"])
    for note in data["notes"]:
        say(f"- {note['meaning']}: {note['count']} request(s), "
            f"last seen {note['last_seen_at'][:19]}")


@directory.group("oauth")
def oauth() -> None:
    """OAuth 2.0 client credentials of a directory (POST /oauth/token)."""


_directory_option = click.option("--directory", "directory_ref", required=True,
                                  help="Directory id.")


def _print_credentials(ctx: CliContext, client_id: str, secret: str) -> None:
    base = ctx.settings["app"]["base_url"].rstrip("/")
    say(f"Token endpoint: {base}/oauth/token")
    say(f"Client id:      {client_id}")
    say(f"Client secret:  {secret}")
    say(f"SCIM base URL:  {scim_base_url(ctx)}")
    say("The secret is shown once; store it in your IdP now.")


def _issue(ctx: CliContext, directory_ref: str, make: Callable[..., tuple[OAuthClient, str]],
           ) -> None:
    with ctx.transaction() as session:
        client, secret = make(session, get_directory(session, directory_ref), ctx.actor)
    _print_credentials(ctx, client.client_id, secret)


@oauth.command("create")
@_directory_option
@pass_ctx
def oauth_create(ctx: CliContext, directory_ref: str) -> None:
    """Give the directory a client id and secret."""
    _issue(ctx, directory_ref, create_client)


@oauth.command("rotate")
@_directory_option
@pass_ctx
def oauth_rotate(ctx: CliContext, directory_ref: str) -> None:
    """A new secret; the old one stops working, issued tokens live until they expire."""
    _issue(ctx, directory_ref, rotate_secret)


@oauth.command("revoke")
@_directory_option
@pass_ctx
def oauth_revoke(ctx: CliContext, directory_ref: str) -> None:
    """Revoke the client and every access token issued to it."""
    with ctx.transaction() as session:
        client = revoke_client(session, get_directory(session, directory_ref), ctx.actor)
    say(f"OAuth client {client.client_id} revoked, with its access tokens")
