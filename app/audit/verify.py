"""Walk each hash chain and name the first record that was changed, removed or reordered."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, union
from sqlalchemy.orm import Session

from app.audit.log import GENESIS_HASH, chain_for, compute_hash
from app.models import AuditChainHead, AuditEvent
from app.models.lifecycle import AuditCheckpoint


@dataclass(frozen=True)
class ChainReport:
    """The outcome for one chain: how many records were checked and the first problem."""

    chain: str
    records: int
    head_seq: int
    bad_seq: int | None = None
    bad_event_id: str | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """True when every record and the head agree."""
        return self.problem is None


def chains(session: Session, organization_id: str | None = None) -> list[str]:
    """The chains to check: one organization's, or every chain the database knows of.

    Not only those with a head: a chain whose head row was deleted with its records (an
    organization's whole log) still has its signed checkpoints, and a chain's records
    without a head are a removed head; either must be reported, not skipped."""
    if organization_id:
        return [chain_for(organization_id)]
    known = union(select(AuditChainHead.chain), select(AuditEvent.chain).distinct(),
                  select(AuditCheckpoint.chain).distinct()).subquery()
    return list(session.scalars(select(known.c.chain).order_by(known.c.chain)))


def verify_chain(session: Session, chain: str) -> ChainReport:
    """Recompute every hash in seq order; compare links, sequence and the stored head."""
    head = session.get(AuditChainHead, chain)
    head_seq = head.seq if head else 0
    stmt = (select(AuditEvent).where(AuditEvent.chain == chain).order_by(AuditEvent.seq)
            .execution_options(yield_per=500))
    expected_seq, prev_hash, count = 1, GENESIS_HASH, 0
    for event in session.scalars(stmt):
        count += 1
        problem = _problem(event, expected_seq, prev_hash)
        if problem:
            return ChainReport(chain, count, head_seq, event.seq, event.event_id, problem)
        expected_seq, prev_hash = event.seq + 1, event.hash
    if head is None and count:
        # The first append creates the head and nothing deletes it: without it, records cut
        # off the end would go unnoticed.
        return ChainReport(chain, count, 0, expected_seq, None,
                           f"the log holds records up to seq {expected_seq - 1} but no chain "
                           "head: the head was removed, and with it the check of the end")
    if head is not None and (head.seq != expected_seq - 1 or head.hash != prev_hash):
        return ChainReport(chain, count, head_seq, expected_seq, None,
                           f"chain head is at seq {head.seq} but the log ends at seq "
                           f"{expected_seq - 1}: records at the end were removed")
    return ChainReport(chain, count, head_seq)


def _problem(event: AuditEvent, expected_seq: int, prev_hash: str) -> str | None:
    if event.seq != expected_seq:
        return (f"expected seq {expected_seq}, found {event.seq}: "
                f"record(s) {expected_seq}..{event.seq - 1} were removed")
    if compute_hash(event) != event.hash:
        return "hash does not match the record's content: the record was changed"
    if event.prev_hash != prev_hash:
        return ("prev_hash does not match the previous record's hash: "
                "records were reordered, removed or replaced before this one")
    return None


def verify(session: Session, organization_id: str | None = None) -> list[ChainReport]:
    """Verify one organization's chain or all chains."""
    return [verify_chain(session, chain) for chain in chains(session, organization_id)]
