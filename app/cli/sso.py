"""`roster sso`: login traces for admins."""

from __future__ import annotations

import json
import time

import click

from app.cli.base import CliContext, echo_table, pass_ctx, say
from app.directory.organizations import get_organization
from app.sso.backchannel import run_once, waiting
from app.sso.maintenance import purge_in_batches
from app.sso.provider_config import config_from_settings
from app.sso.traces import list_traces, trace_dict


@click.group()
def sso() -> None:
    """Single sign-on: failed-login traces."""


@sso.command("traces")
@click.option("--org", "org_ref", required=True, help="Organization slug or id.")
@click.option("--reason", default=None, help="Only this reason (e.g. replay, bad_signature).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000),
              help="At most this many traces.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, with payload.")
@pass_ctx
def traces(ctx: CliContext, org_ref: str, reason: str | None, limit: int,
           as_json: bool) -> None:
    """Failed logins of an organization, newest first, by correlation id."""
    with ctx.transaction() as session:
        org = get_organization(session, org_ref)
        found = [trace_dict(t) for t in list_traces(
            session, org.id, limit=limit, reason=reason,
            retention_days=ctx.settings["sso"]["trace_retention_days"])]
    if as_json:
        for item in found:
            click.echo(json.dumps(item, sort_keys=True))
        return
    echo_table(found, ["created_at", "correlation_id", "reason", "subject", "detail"])


# What `purge-traces` reports, per count of app/sso/maintenance.py purge_expired_rows.
_PURGED = {"traces": "trace(s)", "saml": "expired SAML request/replay row(s)",
           "oidc_attempts": "expired OIDC login attempt(s)",
           "authorization_codes": "expired authorization code(s)",
           "issued_tokens": "expired access/refresh token(s)",
           "login_sessions": "ended login session(s)",
           "backchannel_logouts": "old back-channel logout(s)"}


@sso.command("purge-traces")
@pass_ctx
def purge(ctx: CliContext) -> None:
    """Delete expired traces, AuthnRequests, replay-cache rows, OIDC attempts and codes,
    tokens, ended sessions and old back-channel logouts, a batch
    (events.purge_batch_size) per transaction; print how many of each."""
    counts, _ = purge_in_batches(
        ctx.db, ctx.settings["events"]["purge_batch_size"],
        trace_retention_days=ctx.settings["sso"]["trace_retention_days"])
    # Every kind the purge deletes, each on its line (tokens, sessions and back-channel
    # logouts went unreported); a kind added later is named by its key.
    for key, count in counts.items():
        say(f"{count} {_PURGED.get(key, key.replace('_', ' '))} deleted")


@sso.command("backchannel")
@click.option("--loop", is_flag=True, help="Keep running (every --interval seconds).")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Seconds between runs with --loop.")
@pass_ctx
def backchannel(ctx: CliContext, loop: bool, interval: float) -> None:
    """Send OIDC back-channel logouts for sessions revoked since the last run.

    Without an OIDC provider key there is nothing to send (exit 0), unless revoked
    sessions wait for their logouts (exit 1: this configuration is not the server's)."""
    config = config_from_settings(ctx.settings)
    timeout = float(ctx.settings["oidc_provider"]["backchannel_timeout_seconds"])
    if config is None:
        # Without a signing key no logout token can be made, and none is queued (deliveries
        # nothing sends read as done). A deployment without the provider has no portal
        # sessions to log out: nothing to do, not a failure. Revoked sessions waiting (this
        # run's configuration is not the one `roster serve` has) are work left undone.
        why = "the OIDC provider is not configured (oidc_provider.signing_key_file is empty)"
        left = waiting(ctx.db, timeout=timeout)
        if left:
            raise click.ClickException(f"{left} revoked session(s) wait for a back-channel "
                                       f"logout, which cannot be signed here: {why}")
        say(f"nothing to send: {why}")
        return
    while True:
        result = run_once(ctx.db, config, timeout=timeout)
        say(" ".join(f"{k}={v}" for k, v in result.items()))
        if not loop:
            return
        time.sleep(interval)
