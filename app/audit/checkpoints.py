"""Signed checkpoints: each chain head signed with the deployment key, periodically and on demand.

A checkpoint proves what the log said at that moment, even against someone who can rewrite
the whole table and recompute every hash, but only while the checkpoint itself survives.
The ``audit_checkpoints`` table lives in the same database, so whoever can rewrite the log
can delete its checkpoints too: the copies that count are kept elsewhere. Each checkpoint
of an organization's chain is therefore also an ``audit.checkpoint`` event to the portal
(webhook and pull feed), and ``roster audit checkpoints`` exports them; ``roster audit
verify --checkpoints FILE`` checks the log against such copies (``verify_anchors``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.signing import SigningKey, verify_signature
from app.db import utcnow
from app.events import emit
from app.models import AuditChainHead, AuditEvent
from app.models.audit import DEPLOYMENT_CHAIN
from app.models.lifecycle import AuditCheckpoint

EVENT_TYPE = "audit.checkpoint"
# pg_advisory_xact_lock key of the periodic checkpoint (a signed 64-bit number: "roster",
# then "cp"; the events purge's is "roster" and 0021).
_CHECKPOINT_LOCK_KEY = 0x726F73746572_6370
PublicKeys = Mapping[str, Ed25519PublicKey]  # by key id (``key_id_of``)


def checkpoint_body(cp: AuditCheckpoint) -> dict[str, Any]:
    """The signed content of a checkpoint."""
    return {"type": "roster.audit_checkpoint.v1", "chain": cp.chain, "seq": cp.seq,
            "hash": cp.hash, "created_at": cp.created_at.isoformat(), "key_id": cp.key_id}


def exported(cp: AuditCheckpoint) -> dict[str, Any]:
    """A checkpoint as kept elsewhere: the signed body and its signature."""
    return {"checkpoint": checkpoint_body(cp), "signature": cp.signature}


def write_checkpoints(session: Session, key: SigningKey) -> list[AuditCheckpoint]:
    """Sign every chain head that moved since its last checkpoint; send each signed head of
    an organization's chain to the portal as an ``audit.checkpoint`` event."""
    last = dict(session.execute(select(AuditCheckpoint.chain, func.max(AuditCheckpoint.seq))
                                .group_by(AuditCheckpoint.chain)).all())
    written = []
    now = utcnow()
    for head in session.scalars(select(AuditChainHead).order_by(AuditChainHead.chain)):
        if head.seq == 0 or last.get(head.chain, 0) >= head.seq:
            continue
        cp = AuditCheckpoint(chain=head.chain, seq=head.seq, hash=head.hash, created_at=now,
                             key_id=key.key_id, signature="")
        cp.signature = key.sign(checkpoint_body(cp))
        session.add(cp)
        written.append(cp)
        if head.chain != DEPLOYMENT_CHAIN:
            emit(session, organization_id=head.chain, type=EVENT_TYPE,
                 aggregate_id=head.chain, payload=exported(cp))
    return written


def checkpoint_due(session: Session, interval_seconds: int,
                   now: datetime | None = None) -> bool:
    """True when no checkpoint was written within the interval."""
    latest = session.scalar(select(func.max(AuditCheckpoint.created_at)))
    return latest is None or latest <= (now or utcnow()) - timedelta(seconds=interval_seconds)


def checkpoint_if_due(session: Session, key: SigningKey,
                      interval_seconds: int) -> list[AuditCheckpoint]:
    """The periodic checkpoint of `roster worker`: :func:`write_checkpoints` when none was
    written within the interval, by one worker at a time (PostgreSQL: an advisory
    transaction lock; a worker that finds it taken leaves the round to its holder). Two
    workers finding it due at once both signed every head, twice in the log and the feed."""
    if session.get_bind().dialect.name == "postgresql" and not session.scalar(
            select(func.pg_try_advisory_xact_lock(_CHECKPOINT_LOCK_KEY))):
        return []
    if not checkpoint_due(session, interval_seconds):
        return []
    return write_checkpoints(session, key)


def _signed(keys: PublicKeys, body: dict[str, Any], signature: str, what: str) -> str | None:
    """Why ``body`` is not a checkpoint signed by a known key, or None."""
    public = keys.get(str(body.get("key_id")))
    if public is None:
        # A key id nobody knows cannot be taken on trust: it is how a forged checkpoint
        # would avoid the signature check.
        return (f"{what} names signing key {body.get('key_id')!r}, which is neither this "
                "deployment's key nor a former one (signing.former_public_key_files, or "
                "--public-key): a tampered key id, or a former key whose public key must be "
                "given")
    if not verify_signature(public, body, signature):
        return f"{what} has an invalid signature"
    return None


def _held(session: Session, chain: str, seq: int, signed_hash: str, what: str) -> str | None:
    stored = session.scalar(select(AuditEvent.hash).where(AuditEvent.chain == chain,
                                                          AuditEvent.seq == seq))
    if stored is None:
        return f"{what} signed seq {seq}, which the log no longer holds: records were removed"
    if stored != signed_hash:
        return (f"{what} signed seq {seq} with hash {signed_hash[:12]}..., the log now "
                f"holds {stored[:12]}...: the log was rewritten")
    return None


def verify_checkpoints(session: Session, keys: PublicKeys, chain: str, after_seq: int = 0,
                       through_seq: int | None = None) -> str | None:
    """Check every stored checkpoint's signature and that the log still holds its hash
    (those of seq after ``after_seq`` and up to ``through_seq``, when given)."""
    stmt = select(AuditCheckpoint).where(AuditCheckpoint.chain == chain,
                                         AuditCheckpoint.seq > after_seq)
    if through_seq is not None:
        stmt = stmt.where(AuditCheckpoint.seq <= through_seq)
    for cp in session.scalars(stmt.order_by(AuditCheckpoint.seq)):
        what = f"checkpoint {cp.id} (seq {cp.seq})"
        problem = (_signed(keys, checkpoint_body(cp), cp.signature, what)
                   or _held(session, chain, cp.seq, cp.hash, what))
        if problem:
            return problem
    return None


def verify_anchors(session: Session, keys: PublicKeys, chain: str,
                   documents: Iterable[dict[str, Any]]) -> str | None:
    """Check the log of ``chain`` against checkpoints kept outside the database (exported,
    or received as ``audit.checkpoint`` events): each must be validly signed by a known key
    and its hash still at its seq, whatever the ``audit_checkpoints`` table holds now."""
    for document in documents:
        body, signature = document["checkpoint"], document["signature"]
        what = f"the kept checkpoint of seq {body['seq']} ({body['created_at']})"
        problem = (_signed(keys, body, signature, what)
                   or _held(session, chain, int(body["seq"]), str(body["hash"]), what))
        if problem:
            return problem
    return None
