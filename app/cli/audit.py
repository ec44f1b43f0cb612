"""`roster audit`: verify the chains, checkpoints, receipts, export and the deprovision report."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.checkpoints import (
    exported,
    verify_anchors,
    verify_checkpoints,
    write_checkpoints,
)
from app.audit.export import FORMATS, AuditFilter, iter_events, position, render
from app.audit.receipts import check_receipt, get_record, make_receipt
from app.audit.report import deprovision_report, latency_of
from app.audit.sealed_records import verify_records
from app.audit.signing import (
    SigningKey,
    former_public_keys,
    key_id_of,
    load_public_key,
    load_signing_key,
    verification_keys,
)
from app.audit.verify import read_one_snapshot
from app.audit.verify import verify as verify_chains
from app.cli.base import (
    ROW_ID,
    CliContext,
    command_errors,
    echo_table,
    output_file,
    pass_ctx,
    say,
)
from app.db import utcnow
from app.directory.organizations import get_organization
from app.models.lifecycle import AuditCheckpoint
from app.settings import ROOT

_RELATIVE = re.compile(r"^(\d+)([mhd])\Z")


def parse_when(value: str | None, option: str = "--since") -> datetime | None:
    """ISO 8601 (UTC if no offset) or a relative age like 30m, 24h, 7d."""
    if not value:
        return None
    if match := _RELATIVE.match(value):
        unit = {"m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
        try:
            return utcnow() - timedelta(**{unit: int(match.group(1))})
        except OverflowError:  # before year 1
            raise click.BadParameter(f"{value!r} is further back than dates go",
                                     param_hint=option) from None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither ISO 8601 nor like 24h / 7d",
                                 param_hint=option) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=utcnow().tzinfo)


def signing_key(ctx: CliContext) -> SigningKey:
    """The deployment key (a development key is generated under var/ when none is set)."""
    return load_signing_key(ctx.settings, ROOT)


@click.group()
def audit() -> None:
    """The tamper-evident audit log: verify, checkpoint, export, receipts, reports."""


def _public_keys(ctx: CliContext, files: tuple[BinaryIO, ...]) -> dict[str, Any]:
    """This deployment's public key, the former ones configured
    (``signing.former_public_key_files``, as the API's check uses them) and those given
    with --public-key, by key id."""
    return verification_keys(signing_key(ctx), former_public_keys(ctx.settings),
                             [load_public_key(f.read()) for f in files])


def _kept_checkpoints(file: TextIO | None) -> dict[str, list[dict[str, Any]]]:
    """The checkpoints of a --checkpoints file (JSON Lines of ``{"checkpoint", "signature"}``,
    as ``roster audit checkpoints`` writes and ``audit.checkpoint`` events carry), by chain."""
    kept: dict[str, list[dict[str, Any]]] = {}
    for number, line in enumerate(file or (), start=1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except ValueError:
            document = None
        if isinstance(document, dict):
            document = document.get("data", document)  # a whole event as the feed gives it
        if not _is_kept_checkpoint(document):
            raise click.ClickException(f"{file.name} line {number} is not a kept checkpoint "
                                       "(JSON with 'checkpoint' and 'signature')")
        kept.setdefault(document["checkpoint"]["chain"], []).append(document)
    return kept


_CHECKPOINT_TEXT = ("chain", "hash", "created_at", "key_id")


def _is_kept_checkpoint(document: Any) -> bool:
    """The shape ``exported`` writes: what verify_anchors reads can be read."""
    body = document.get("checkpoint") if isinstance(document, dict) else None
    return (isinstance(body, dict) and isinstance(document.get("signature"), str)
            and isinstance(body.get("seq"), int) and not isinstance(body["seq"], bool)
            and all(isinstance(body.get(name), str) for name in _CHECKPOINT_TEXT))


@audit.command("verify")
@click.option("--org", "org_ref", default=None, help="Only this organization's chain.")
@click.option("--public-key", "public_key_files", type=click.File("rb"), multiple=True,
              help="A former signing key's public PEM, for checkpoints it signed (repeatable).")
@click.option("--checkpoints", "checkpoints_file", type=click.File("r"), default=None,
              help="Checkpoints kept outside the database (roster audit checkpoints, or the "
                   "audit.checkpoint events): the log must still hold each signed head.")
@pass_ctx
@command_errors
def verify(ctx: CliContext, org_ref: str | None, public_key_files: tuple[BinaryIO, ...],
           checkpoints_file: TextIO | None) -> None:
    """Recompute every chain; name the first changed, removed or reordered record."""
    keys = _public_keys(ctx, public_key_files)
    kept = _kept_checkpoints(checkpoints_file)
    bad = 0
    with ctx.transaction() as session:
        read_one_snapshot(session)  # a live deployment goes on appending meanwhile
        org_id = get_organization(session, org_ref).id if org_ref else None
        for report in verify_chains(session, org_id):
            # Taken before the checks: a chain found bad earlier (records cut off) is still
            # a chain the log holds, not one its kept checkpoints must report as removed.
            anchors = kept.pop(report.chain, [])
            problem = (report.problem or verify_checkpoints(session, keys, report.chain)
                       or verify_anchors(session, keys, report.chain, anchors))
            if problem is None:
                say(f"ok   chain {report.chain}: {report.records} records, "
                    f"head seq {report.head_seq}{_anchored(checkpoints_file, anchors)}")
                continue
            bad += 1
            where = f"seq {report.bad_seq}" if report.bad_seq else "checkpoint"
            event = f" (event {report.bad_event_id})" if report.bad_event_id else ""
            say(f"BAD  chain {report.chain}: first bad record at {where}{event}: "
                f"{problem}")
        bad += _verify_deprovision_records(session, org_id)
    for chain, documents in kept.items():
        if org_id is None or chain == org_id:
            bad += 1  # signed heads of a chain the database no longer has at all
            say(f"BAD  chain {chain}: {len(documents)} kept checkpoint(s) signed it, "
                "the log holds no such chain: it was removed")
    if bad:
        raise SystemExit(1)


def _anchored(file: TextIO | None, anchors: list[dict[str, Any]]) -> str:
    """What the kept checkpoints did for a chain found whole: a --checkpoints file holding
    none of it (another organization's) anchors nothing, and must not read as a check."""
    if file is None:
        return ""
    if not anchors:
        return f"; no kept checkpoint of this chain in {file.name}"
    latest = max(int(a["checkpoint"]["seq"]) for a in anchors)
    return f"; anchored by {len(anchors)} kept checkpoint(s), the latest at seq {latest}"


def _verify_deprovision_records(session: Session, org_id: str | None) -> int:
    """Say how the deprovisioning records fare against their audit events' digests (the
    chain vouches for the events); return how many are bad."""
    report = verify_records(session, org_id)
    for found in report.problems:
        event = f" (audit event {found.event_id})" if found.event_id else ""
        say(f"BAD  deprovisioning record {found.record_id}{event}: {found.problem}")
    if not report.problems:
        say(f"ok   deprovisioning records: {report.records} records, {report.sealed} "
            "matching their audit event's digest")
    return len(report.problems)


@audit.command("checkpoints")
@click.option("--org", "org_ref", default=None, help="Only this organization's chain.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write to this file (made even when there is no "
                                 "checkpoint; replaced once complete) instead of stdout.")
@pass_ctx
@command_errors
def checkpoints(ctx: CliContext, org_ref: str | None, output: Path | None) -> None:
    """Export the signed checkpoints as JSON Lines, to keep outside the database."""
    with output_file(output) as out, ctx.transaction() as session:
        query = select(AuditCheckpoint).order_by(AuditCheckpoint.chain, AuditCheckpoint.seq)
        if org_ref:
            query = query.where(AuditCheckpoint.chain == get_organization(session, org_ref).id)
        for cp in session.scalars(query):
            out.write(json.dumps(exported(cp), sort_keys=True) + "\n")


@audit.command("checkpoint")
@pass_ctx
@command_errors
def checkpoint(ctx: CliContext) -> None:
    """Sign every chain head now (what the worker also does periodically)."""
    key = signing_key(ctx)
    with ctx.transaction() as session:
        written = write_checkpoints(session, key)
        rows = [{"chain": c.chain, "seq": c.seq, "hash": c.hash[:16], "key": c.key_id}
                for c in written]
    echo_table(rows, ["chain", "seq", "hash", "key"])


@audit.command("public-key")
@pass_ctx
@command_errors
def public_key(ctx: CliContext) -> None:
    """Print the deployment's public key (PEM): give it to auditors for offline checks."""
    click.echo(signing_key(ctx).public_pem(), nl=False)


@audit.command("receipt")
@click.argument("record_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the receipt (JSON) to this file instead of stdout.")
@pass_ctx
@command_errors
def receipt(ctx: CliContext, record_id: str, output: Path | None) -> None:
    """Write the signed receipt of deprovisioning RECORD_ID (stdout by default)."""
    key = signing_key(ctx)
    with ctx.transaction() as session:
        document = make_receipt(session, get_record(session, record_id), key)
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if output:
        output.write_text(text)
    else:
        click.echo(text, nl=False)


@audit.command("verify-receipt")
@click.argument("file", type=click.File("r"))
@click.option("--public-key", "public_key_file", type=click.File("rb"), default=None,
              help="Trusted public key PEM (offline), the only one used. Default: this "
                   "deployment's key and the former ones (signing.former_public_key_files).")
@pass_ctx
@command_errors
def verify_receipt_(ctx: CliContext, file: TextIO, public_key_file: BinaryIO | None) -> None:
    """Check a receipt's Ed25519 signature; exit 1 when it does not verify. Names the key
    that verified it: a receipt signed before a key rotation verifies with the former key."""
    try:
        document = json.load(file)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{file.name} is not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise click.ClickException(f"{file.name} is not a Roster receipt (a JSON object)")
    if public_key_file is not None:
        given = load_public_key(public_key_file.read())
        keys, trusted = {key_id_of(given): given}, "the given key"
        which = dict.fromkeys(keys, "the given key")
    else:
        key = signing_key(ctx)
        keys = verification_keys(key, former_public_keys(ctx.settings))
        trusted = ("this deployment's key nor a former one (signing.former_public_key_files; "
                   "or give its public key with --public-key):")
        which = {**dict.fromkeys(keys, "a former key (signing.former_public_key_files)"),
                 key.key_id: "this deployment's key"}
    record, key_id = check_receipt(document, keys, trusted)
    if record.get("outcome", "applied") != "applied":
        # No receipt is issued for such a record; a signed one proves no deprovisioning.
        raise click.ClickException(f"signed, but record {record['id']} has outcome "
                                   f"{record.get('outcome')!r}: not a deprovisioning")
    say(f"valid: deprovisioning {record['id']} of {record['user_name']} "
        f"({record['trigger']}) received {record['received_at']}")
    say(f"signed by key {key_id}, {which[key_id]}")


CLI_SETTLE_SECONDS = 120.0


@audit.command("export")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="jsonl",
              show_default=True, help="CSV, JSON Lines, or OCSF 1.1 (JSON Lines).")
@click.option("--org", "org_ref", default=None,
              help="Only this organization's chain (slug or id).")
@click.option("--since", default=None, help="ISO 8601 or relative (24h, 7d).")
@click.option("--until", default=None,
              help="Only events before this: ISO 8601 or an age (1h, 7d: that long ago).")
@click.option("--action", default=None,
              help="Only this action tag (user:deprovision), or a noun with :* (user:*).")
@click.option("--subject", default=None, help="Only events about this subject id.")
@click.option("--after-seq", type=ROW_ID, default=None,
              help="With --org: only records after this seq (the last of the previous "
                   "export), in seq order; an incremental export that misses none.")
@click.option("--after-id", type=ROW_ID, default=None,
              help="Only records after this position (the previous export's, kept by "
                   "--position-file); across organizations too.")
@click.option("--position-file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Export on from the position kept in FILE (everything when "
                                 "it does not exist yet) and keep this export's position "
                                 "there once it is complete: an incremental export.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write to this file (replaced once the export is "
                                 "complete) instead of stdout.")
@pass_ctx
@command_errors
def export(ctx: CliContext, fmt: str, org_ref: str | None, since: str | None,
           until: str | None, action: str | None, subject: str | None,
           after_seq: int | None, after_id: int | None, position_file: Path | None,
           output: Path | None) -> None:
    """Stream audit events as CSV, JSON Lines or OCSF (3001, 3006 per member) JSON Lines."""
    if after_seq is not None and org_ref is None:
        raise click.UsageError("--after-seq needs --org: seq counts per organization's chain")
    if after_seq is not None and (after_id is not None or position_file is not None):
        raise click.UsageError("give --after-seq or --after-id/--position-file, not both")
    if after_id is not None and position_file is not None:
        raise click.UsageError("give --after-id or --position-file, not both")
    if position_file is not None:
        after_id = _read_position(position_file)
    with output_file(output) as out, ctx.transaction() as session:
        organization_id = get_organization(session, org_ref).id if org_ref else None
        # A batch command waits longer than a web request for an audit record still being
        # committed (a mapping apply over a large organization may take a minute).
        through = max(position(session, organization_id, settle_seconds=CLI_SETTLE_SECONDS),
                      after_id or 0)
        flt = AuditFilter(organization_id=organization_id, since=parse_when(since),
                          until=parse_when(until, "--until"), action=action,
                          subject_id=subject, after_seq=after_seq, after_id=after_id or 0,
                          through_id=through)
        for chunk in render(iter_events(session, flt), fmt, subject):
            out.write(chunk)
        out.flush()
    if position_file is not None:
        _write_position(position_file, through)


def _read_position(path: Path) -> int:
    """The position an earlier export kept in ``path``; 0 (from the start) before the
    first."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise click.UsageError(f"cannot read the position file {path}: {exc.strerror}") \
            from None
    if not text.isdigit() or not text.isascii():
        raise click.UsageError(f"{path} holds no position (an id, as `roster audit export "
                               f"--position-file` writes it): {text[:40]!r}")
    return int(text)


def _write_position(path: Path, through: int) -> None:
    """Keep ``through`` in ``path``, replacing the old one at once (never half written)."""
    partial = path.with_name(path.name + ".partial")
    try:
        partial.write_text(f"{through}\n")
        partial.replace(path)
    except OSError as exc:
        raise click.ClickException(f"the export is complete, but its position ({through}) "
                                   f"could not be kept in {path}: {exc.strerror}") from None


@audit.command("deprovisions")
@click.option("--org", "org_ref", required=True, help="Organization slug or id.")
@click.option("--since", default=None, help="ISO 8601 or relative (24h, 7d).")
@click.option("--until", default=None,
              help="Only deprovisionings before this: ISO 8601 or an age (1d: a day ago).")
@pass_ctx
@command_errors
def deprovisions(ctx: CliContext, org_ref: str, since: str | None, until: str | None) -> None:
    """Report: count, latency p50/p95/max (received -> revocation committed), and the list."""
    with ctx.transaction() as session:
        org = get_organization(session, org_ref)
        report = deprovision_report(session, org.id, parse_when(since),
                                    parse_when(until, "--until"))
    fmt = (lambda v: "-" if v is None else f"{v:.1f} ms")  # noqa: E731
    say(f"deprovisionings: {report.count}  latency p50 {fmt(report.p50_ms)}  "
        f"p95 {fmt(report.p95_ms)}  max {fmt(report.max_ms)}"
        + (f"  FAILED: {report.failed} (nothing revoked; see the error)"
           if report.failed else ""))
    echo_table([{"received": r.received_at.strftime("%Y-%m-%d %H:%M:%S"),
                 "user": r.user_name, "trigger": r.trigger,
                 "latency": fmt(latency_of(r)) if r.outcome == "applied" else "FAILED",
                 "sessions": r.sessions_revoked, "tokens": r.tokens_revoked,
                 "grants": r.grants_removed, "batch": r.batch_id or "-", "id": r.id}
                for r in report.records],
               ["received", "user", "trigger", "latency", "sessions", "tokens", "grants",
                "batch", "id"])
