"""Signed checkpoints: each chain head signed with the deployment key, periodically and on demand.

A copy kept elsewhere proves what the log said at that moment, even against someone who
can rewrite the whole table and recompute every hash.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.signing import SigningKey, verify_signature
from app.db import utcnow
from app.models import AuditChainHead, AuditEvent
from app.models.lifecycle import AuditCheckpoint


def checkpoint_body(cp: AuditCheckpoint) -> dict[str, Any]:
    """The signed content of a checkpoint."""
    return {"type": "roster.audit_checkpoint.v1", "chain": cp.chain, "seq": cp.seq,
            "hash": cp.hash, "created_at": cp.created_at.isoformat(), "key_id": cp.key_id}


def write_checkpoints(session: Session, key: SigningKey) -> list[AuditCheckpoint]:
    """Sign every chain head that moved since its last checkpoint."""
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
    return written


def checkpoint_due(session: Session, interval_seconds: int,
                   now: datetime | None = None) -> bool:
    """True when no checkpoint was written within the interval."""
    latest = session.scalar(select(func.max(AuditCheckpoint.created_at)))
    return latest is None or latest <= (now or utcnow()) - timedelta(seconds=interval_seconds)


def verify_checkpoints(session: Session, key: SigningKey, chain: str) -> str | None:
    """Check every checkpoint's signature and that the log still holds the signed hash."""
    public = key.private.public_key()
    for cp in session.scalars(select(AuditCheckpoint).where(AuditCheckpoint.chain == chain)
                              .order_by(AuditCheckpoint.seq)):
        if cp.key_id == key.key_id and not verify_signature(public, checkpoint_body(cp),
                                                            cp.signature):
            return f"checkpoint {cp.id} (seq {cp.seq}) has an invalid signature"
        stored = session.scalar(select(AuditEvent.hash).where(AuditEvent.chain == chain,
                                                              AuditEvent.seq == cp.seq))
        if stored != cp.hash:
            return (f"checkpoint {cp.id} signed seq {cp.seq} with hash {cp.hash[:12]}..., "
                    f"the log now holds {str(stored)[:12]}...: the log was rewritten")
    return None
