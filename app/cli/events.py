"""`roster worker` and `roster events`: webhook delivery and its dead-letter queue."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from datetime import timedelta
from types import FrameType

import click

from app.api.ratelimit import purge_ended as purge_rate_limit_counters
from app.audit import Actor
from app.audit.checkpoints import checkpoint_if_due
from app.cli.audit import signing_key
from app.cli.base import DAYS, ROW_ID, CliContext, command_errors, echo_table, pass_ctx, say
from app.db import utcnow
from app.errors import DomainError, NotFound
from app.events.delivery import WebhookConfig, blocked_by, list_deliveries, redeliver
from app.events.endpoints import endpoint_key
from app.events.retention import MARKS_KEPT, Retention, purge_old_events
from app.events.watermark import delivered_to, held_endpoints, reset_cursor
from app.events.worker import run
from app.lifecycle.batches import purge_due
from app.lifecycle.purge import purge_in_batches
from app.planner import refresh_statistics
from app.scim.recorder import prune_aged
from app.settings import MAX_PURGE_BATCH
from app.sso.backchannel import run_once as backchannel_once
from app.sso.connection_metadata import refresh_due
from app.sso.maintenance import PeriodicPurge
from app.sso.provider_config import config_from_settings

# Measured SQLite planner statistics (app.planner) are refreshed this often.
STATISTICS_INTERVAL_SECONDS = 3600
# Soft-deleted users past lifecycle.retention_days are purged this often (issue 7).
LIFECYCLE_PURGE_INTERVAL_SECONDS = 3600
# SAML metadata older than sso.metadata_refresh_hours is looked for this often (issue 8).
METADATA_CHECK_INTERVAL_SECONDS = 3600
# Events and deliveries past events.retention_days are purged this often, at most
# EVENTS_PURGE_BATCHES batches a time: a first purge of a large outbox goes on in the next
# rounds instead of holding back webhook delivery meanwhile.
EVENTS_PURGE_INTERVAL_SECONDS = 600
EVENTS_PURGE_BATCHES = 20


@click.command("worker")
@click.option("--until-idle", is_flag=True,
              help="Exit when a round finds nothing due (a retry not due yet stays pending).")
@click.option("--worker-id", default=None, help="Name in leases (default: host:pid).")
@pass_ctx
@command_errors
def worker(ctx: CliContext, until_idle: bool, worker_id: str | None) -> None:
    """Deliver webhooks, OIDC back-channel logouts, audit checkpoints; purge expired SSO rows,
    events past events.retention_days, SCIM flight recorder requests past
    recorder.max_age_days, ended rate-limit counters and, hourly, users soft-deleted longer
    ago than lifecycle.retention_days (each purge in batches of events.purge_batch_size)."""
    ctx.newer_release_ok = True  # serves on through a rolling deploy, as the web nodes do
    config = WebhookConfig.from_settings(ctx.settings)
    key = signing_key(ctx)
    interval = ctx.settings["signing"]["checkpoint_interval_seconds"]
    name = worker_id or f"{socket.gethostname()}:{os.getpid()}"
    stop = threading.Event()
    checked = [0.0]

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    provider = config_from_settings(ctx.settings)
    bcl_timeout = float(ctx.settings["oidc_provider"]["backchannel_timeout_seconds"])
    sent = [0.0]
    purge = PeriodicPurge(ctx.db, batch_size=ctx.settings["events"]["purge_batch_size"],
                          trace_retention_days=ctx.settings["sso"]["trace_retention_days"])
    analyzed = [float("-inf")]
    purged = [float("-inf")]
    retention_days = ctx.settings["lifecycle"]["retention_days"]
    out_days = ctx.settings["lifecycle"]["deprovisioned_retention_days"]
    system = Actor(type="system", id=f"worker:{name}")

    def _purge_lifecycle() -> None:
        # Checked read-only first: an idle check takes no (SQLite) write lock.
        purged[0] = time.monotonic()
        with ctx.db.transaction(readonly=True) as session:
            if not purge_due(session, retention_days=retention_days,
                             deprovisioned_days=out_days):
                return
        run = purge_in_batches(ctx.db, system, retention_days=retention_days,
                               deprovisioned_days=out_days, batch_size=retention.batch_size,
                               max_batches=EVENTS_PURGE_BATCHES)
        if run.more:  # users left: go on next round
            purged[0] = float("-inf")
        count = run.purged
        also = f" or deprovisioned more than {out_days} day(s) ago" if out_days else ""
        say(f"worker {name}: purged {count} user(s) deleted more than "
            f"{retention_days} day(s) ago{also}", err=True)

    retention = Retention.from_settings(ctx.settings)
    events_purged = [float("-inf")]

    def _purge_events() -> None:
        events_purged[0] = time.monotonic()
        counts = purge_old_events(ctx.db, retention, config.endpoints,
                                  max_batches=EVENTS_PURGE_BATCHES)
        if counts.more:  # work left: go on next round
            events_purged[0] = float("-inf")
        if counts.events or counts.deliveries:
            say(f"worker {name}: purged {counts.events} event(s) and "
                f"{counts.deliveries} delivered webhook delivery(ies) older than "
                f"{retention.days} day(s)", err=True)
        if counts.marks:
            say(f"worker {name}: dropped {counts.marks} purge record(s) older than "
                f"{MARKS_KEPT * retention.days} day(s)", err=True)

    recorder_days = ctx.settings["recorder"]["max_age_days"]
    recorder_pruned = [float("-inf")]

    def _prune_recorder() -> None:
        # The SCIM flight recorder and the rate-limit counters prune themselves only as
        # requests arrive.
        recorder_pruned[0] = time.monotonic()
        count, more = prune_aged(ctx.db, utcnow() - timedelta(days=recorder_days),
                                 retention.batch_size, max_batches=EVENTS_PURGE_BATCHES)
        if more:
            recorder_pruned[0] = float("-inf")
        if count:
            say(f"worker {name}: pruned {count} SCIM flight recorder request(s) older than "
                f"{recorder_days} day(s)", err=True)
        # Rate-limit counters (failed authentications: by client address) of ended windows.
        count, left = purge_rate_limit_counters(ctx.db, retention.batch_size,
                                                max_batches=EVENTS_PURGE_BATCHES)
        if left:
            recorder_pruned[0] = float("-inf")
        if count:
            say(f"worker {name}: deleted {count} rate-limit counter(s) of ended windows",
                err=True)

    refresh_hours = ctx.settings["sso"]["metadata_refresh_hours"]
    metadata_checked = [float("-inf")]

    def _refresh_metadata() -> None:
        # Each stale one claimed, then fetched with no transaction open (refresh_due).
        metadata_checked[0] = time.monotonic()
        for connection_id, outcome in refresh_due(
                ctx.db, timedelta(hours=refresh_hours), system,
                private_ok=ctx.settings["sso"]["idp_private_addresses"]):
            if isinstance(outcome, DomainError):
                said = f"metadata of connection {connection_id} not refreshed: {outcome.detail}"
            else:
                said = f"refreshed metadata of connection {connection_id}"
            say(f"worker {name}: {said}", err=True)

    def _periodic() -> None:
        # Measured SQLite planner statistics replace the nominal ones, once an hour.
        if time.monotonic() - analyzed[0] >= STATISTICS_INTERVAL_SECONDS:
            analyzed[0] = time.monotonic()
            refresh_statistics(ctx.db.engine)
        # OIDC back-channel logout for revoked sessions, about once a second.
        if provider is not None and time.monotonic() - sent[0] >= 1.0:
            sent[0] = time.monotonic()
            backchannel_once(ctx.db, provider, timeout=bcl_timeout, stop=stop)
        # Login traces past their retention, spent SAML/OIDC requests (every 10 minutes).
        purge.maybe_run()
        # Identity data of users SCIM-deleted longer ago than the retention period.
        if time.monotonic() - purged[0] >= LIFECYCLE_PURGE_INTERVAL_SECONDS:
            _purge_lifecycle()
        # Outbox events and delivered deliveries past events.retention_days.
        if time.monotonic() - events_purged[0] >= EVENTS_PURGE_INTERVAL_SECONDS:
            _purge_events()
        # SCIM flight recorder requests past recorder.max_age_days, whatever the traffic.
        if time.monotonic() - recorder_pruned[0] >= EVENTS_PURGE_INTERVAL_SECONDS:
            _prune_recorder()
        # IdP metadata from https URLs, for signing-certificate rollover.
        if refresh_hours > 0 and \
                time.monotonic() - metadata_checked[0] >= METADATA_CHECK_INTERVAL_SECONDS:
            _refresh_metadata()
        # Look at most once a minute; the database says whether a checkpoint is due.
        if interval <= 0 or time.monotonic() - checked[0] < min(60, interval):
            return
        checked[0] = time.monotonic()
        with ctx.db.transaction() as session:
            checkpoint_if_due(session, key, interval)

    def _periodic_until_idle() -> None:
        # Each step is marked done before it runs, so that in a long-running worker one that
        # keeps failing waits its interval instead of holding back the rest. --until-idle
        # must not exit after such a round as if it had done them: every step runs again next
        # round (they look before they write), and it exits after a round that ran whole.
        try:
            _periodic()
        except Exception:
            for stamp in (analyzed, sent, purged, events_purged, recorder_pruned,
                          metadata_checked, checked):
                stamp[0] = float("-inf")
            purge.rearm()
            raise

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    rotation = (", signing with webhooks.secret and webhooks.previous_secret"
                if config.previous_secret and config.previous_secret != config.secret else "")
    say(f"worker {name}: {len(config.urls)} endpoint(s){rotation}", err=True)
    run(ctx.db, config, name, stop, until_idle=until_idle,
        periodic=_periodic_until_idle if until_idle else _periodic)


@click.group()
def events() -> None:
    """Webhook deliveries (list them and the dead letters, send one again) and the
    retention of events."""


@events.command("deliveries")
@click.option("--dead", is_flag=True,
              help="Only dead-lettered deliveries (as --status dead; not with another).")
@click.option("--status", type=click.Choice(["pending", "delivered", "dead"]), default=None,
              help="Only deliveries in this state (dead: the dead letters).")
@click.option("--limit", type=click.IntRange(1, 10000), default=100, show_default=True,
              help="At most this many, newest first.")
@pass_ctx
def deliveries(ctx: CliContext, dead: bool, status: str | None, limit: int) -> None:
    """List webhook deliveries with their attempts, last error and next attempt (UTC)."""
    if dead and status not in (None, "dead"):  # it listed the dead ones as if delivered
        raise click.UsageError(f"--dead and --status {status} contradict each other: "
                               "give one of them")
    with ctx.transaction() as session:
        rows = [{"id": d.id, "event": d.event_id, "endpoint": d.endpoint, "status": d.status,
                 "attempts": d.attempts, "last": d.last_status or d.last_error or "-",
                 # With its date: a retry due tomorrow morning read as due this morning.
                 "next": f"{d.next_attempt_at:%Y-%m-%d %H:%M:%S}" if d.status == "pending"
                 else "-"}
                for d in list_deliveries(session, status="dead" if dead else status,
                                         limit=limit, newest_first=True)]
    echo_table(rows, ["id", "event", "endpoint", "status", "attempts", "last", "next"])


@events.command("redeliver")
@click.argument("delivery_id", type=ROW_ID)
@pass_ctx
@command_errors
def redeliver_(ctx: CliContext, delivery_id: int) -> None:
    """Queue DELIVERY_ID again (typically a dead letter) for an immediate attempt; a dead
    one with the dead deliveries of its user (aggregate) held behind it, in order."""
    with ctx.transaction() as session:
        queued = redeliver(session, delivery_id, utcnow())
        if not queued:
            raise NotFound(f"no delivery {delivery_id}")
        waiting = blocked_by(session, queued[0])
        endpoint = queued[0].endpoint
    held = [str(d.id) for d in queued[1:]]
    say(f"delivery {delivery_id} queued"
        + (f", then {', '.join(held)} held behind it" if held else ""))
    if waiting is not None:
        say(f"it waits behind dead delivery {waiting} of the same aggregate: "
            f"redeliver {waiting} to send them in order")
    if endpoint not in _configured(ctx):  # claims take only the URLs configured now
        say(f"{endpoint} is not in webhooks.urls: no worker sends it until it is again")


@events.command("purge")
@click.option("--retention-days", type=click.IntRange(1, DAYS.max), default=None,
              help="Instead of events.retention_days.")
@click.option("--batch-size", type=click.IntRange(1, MAX_PURGE_BATCH), default=None,
              help="Rows per transaction, instead of events.purge_batch_size.")
@pass_ctx
@command_errors
def purge_(ctx: CliContext, retention_days: int | None, batch_size: int | None) -> None:
    """Delete delivered webhook deliveries and outbox events older than the retention now
    (never a pending or dead delivery, its event, or an event not yet fanned out to every
    URL of webhooks.urls), in batches of one transaction each."""
    config = WebhookConfig.from_settings(ctx.settings)
    retention = Retention.from_settings(ctx.settings)
    retention = Retention(days=retention_days or retention.days,
                          batch_size=batch_size or retention.batch_size)
    if retention.days <= 0:
        say("events.retention_days is 0: events are kept (nothing purged)")
        return
    counts = purge_old_events(ctx.db, retention, config.endpoints)
    if counts.batches:
        say(f"purged {counts.events} event(s) and {counts.deliveries} delivered "
            f"webhook delivery(ies) older than {retention.days} day(s) in "
            f"{counts.batches} batch(es)")
    else:  # the transactions that only looked are no batches of a purge
        say(f"nothing to purge: no event or delivered webhook delivery older than "
            f"{retention.days} day(s) may go")
    if counts.marks:
        say(f"dropped {counts.marks} purge record(s) (outbox_purges) older than "
            f"{MARKS_KEPT * retention.days} day(s)")
    with ctx.transaction() as session:
        held = held_endpoints(session, config.endpoints)
    for url in held:
        say(f"webhook fan-out to {url} is held behind purged events: "
            f"`roster events reset-cursor {url}` sends it the retained ones")


@events.command("reset-cursor")
@click.argument("url")
@pass_ctx
@command_errors
def reset_cursor_(ctx: CliContext, url: str) -> None:
    """Make URL's webhook fan-out start again from the oldest event kept (after a purge
    deleted events it had not received; events it has a delivery of are not sent again).
    URL as configured or as Roster shows it (credentials masked). Idempotent: a URL
    without a cursor (reset already, or not fanned out to yet) starts there already."""
    endpoint = endpoint_key(url)
    configured = _configured(ctx)
    with ctx.transaction() as session:
        if reset_cursor(session, endpoint):
            say(f"fan-out to {endpoint} starts again from the oldest event kept")
            return
        known = endpoint in configured or delivered_to(session, endpoint)
    if not known:  # a typo, most likely: resetting it would do nothing anywhere
        raise NotFound(f"no fan-out cursor, delivery or webhooks.urls entry for {endpoint}")
    say(f"fan-out to {endpoint} has no cursor: it already starts from the oldest event kept "
        "(nothing to reset)")


def _configured(ctx: CliContext) -> set[str]:
    """The keys of webhooks.urls as written, unvalidated: a reset or a redelivery needs no
    sendable configuration."""
    return {endpoint_key(u.strip()) for u in
            str(ctx.settings["webhooks"]["urls"]).split(",") if u.strip()}


def issue7_commands() -> list[click.Command]:
    """The command groups of issue 7, for app/cli/commands.py to register."""
    from app.cli.audit import audit
    from app.cli.lifecycle import lifecycle

    return [audit, lifecycle, events, worker]
