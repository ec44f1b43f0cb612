"""Walk each hash chain and name the first record that was changed, removed or reordered."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select, union
from sqlalchemy.orm import Session

from app.audit.log import GENESIS_HASH, chain_for, compute_hash
from app.models import AuditChainHead, AuditEvent, Organization
from app.models.audit import DEPLOYMENT_CHAIN
from app.models.lifecycle import AuditCheckpoint

# What every organization's chain begins with: its creation, in the creating transaction.
FIRST_ACTION = "organization:create"


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
    without a head are a removed head; either must be reported, not skipped. Nor only
    those with any of these: every organization has a chain (``_empty_problem``); one
    statement, so that an organization and its first records are read in one snapshot."""
    if organization_id:
        return [chain_for(organization_id)]
    known = union(select(AuditChainHead.chain), select(AuditEvent.chain).distinct(),
                  select(AuditCheckpoint.chain).distinct(),
                  select(Organization.id)).subquery()
    return list(session.scalars(select(known.c.chain).order_by(known.c.chain)))


def verify_chain(session: Session, chain: str) -> ChainReport:
    """Recompute every hash in seq order; compare links, sequence and the stored head.

    Records up to the head are checked one by one; the end is then compared with the head
    as ``verify_chain_page`` compares it (``_end_problem``), so a record beyond the head is
    named as one added outside Roster, at its own seq."""
    head = session.get(AuditChainHead, chain)
    head_seq = head.seq if head else 0
    stmt = (select(AuditEvent).where(AuditEvent.chain == chain).order_by(AuditEvent.seq)
            .execution_options(yield_per=500))
    if head is not None:
        stmt = stmt.where(AuditEvent.seq <= head_seq)
    expected_seq, prev_hash, count = 1, GENESIS_HASH, 0
    for event in session.scalars(stmt):
        count += 1
        problem = _problem(event, expected_seq, prev_hash)
        if problem:
            return ChainReport(chain, count, head_seq, event.seq, event.event_id, problem)
        expected_seq, prev_hash = event.seq + 1, event.hash
    # The first append creates the head and nothing deletes it: without it, records cut
    # off the end would go unnoticed.
    end = _end_problem(session, chain, head, expected_seq - 1, prev_hash)
    if end is not None:
        return ChainReport(chain, count, head_seq, expected_seq, None, end)
    return ChainReport(chain, count, head_seq)


def _empty_problem(session: Session, chain: str) -> str | None:
    """Why a chain with neither records nor a head is not simply an unused one: an
    organization's chain begins with its ``organization:create`` record, written in the
    transaction that creates it (app/directory/organizations.py), so an organization
    without a chain lost its whole log (deleted, or ``TRUNCATE``, which no row trigger
    sees). The deployment's chain may not have begun yet."""
    if chain == DEPLOYMENT_CHAIN or session.get(Organization, chain) is None:
        return None
    return ("the organization has no audit record and no chain head, but its log begins "
            f"with its {FIRST_ACTION} record: the whole log was removed")


def _problem(event: AuditEvent, expected_seq: int, prev_hash: str) -> str | None:
    if event.seq != expected_seq:
        return (f"expected seq {expected_seq}, found {event.seq}: "
                f"record(s) {expected_seq}..{event.seq - 1} were removed")
    if compute_hash(event) != event.hash:
        return "hash does not match the record's content: the record was changed"
    if event.prev_hash != prev_hash:
        return ("prev_hash does not match the previous record's hash: "
                "records were reordered, removed or replaced before this one")
    if event.seq == 1 and event.chain != DEPLOYMENT_CHAIN and (
            event.action != FIRST_ACTION or event.subject_id != event.chain):
        return (f"the chain begins with {event.action}, not with the organization's "
                f"{FIRST_ACTION}: the log was removed and a new one begun")
    return None


def read_one_snapshot(session: Session) -> None:
    """Make the session's transaction read one snapshot (PostgreSQL REPEATABLE READ); call
    it before the transaction's first statement.

    A check reads a chain's head, then its records, then the deprovisioning records and
    the events that name them, in several statements. At READ COMMITTED each sees the
    commits made since the one before, so on a live deployment an append landing between
    two reads made an untouched log look tampered with: a record beyond the head read
    first ("records at the end were removed"), or a deprovisioning record without the event
    read before it ("added outside Roster"). SQLite needs nothing: a check holding the
    write lock sees no commit (https://www.postgresql.org/docs/current/transaction-iso.html).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def verify(session: Session, organization_id: str | None = None) -> list[ChainReport]:
    """Verify one organization's chain or all chains."""
    return [verify_chain(session, chain) for chain in chains(session, organization_id)]


@dataclass(frozen=True)
class ChainPage(ChainReport):
    """One bounded stretch of a chain checked: a ``ChainReport`` of the records after
    ``after_seq``, at most ``limit`` of them; ``complete`` once the stretch reached the
    chain's head (which was then checked too). ``next_after_seq`` continues an unfinished
    check. ``ok``: every record of the stretch (and, complete, the head) agree."""

    after_seq: int = field(kw_only=True)
    last_seq: int = field(kw_only=True)
    complete: bool = field(kw_only=True)

    @property
    def next_after_seq(self) -> int | None:
        """The ``after_seq`` of the next stretch: none when done or broken."""
        return self.last_seq if self.ok and not self.complete else None


def verify_chain_page(session: Session, chain: str, after_seq: int = 0,
                      limit: int = 10_000) -> ChainPage:
    """``verify_chain`` over at most ``limit`` records after ``after_seq``, so that a long
    chain is checked in bounded steps (``GET /api/v1/audit/verify``).

    A stretch starts from the stored hash of the record at ``after_seq`` (which the stretch
    before checked). Records up to the head read first are checked, so appends committing
    meanwhile are left for a later check; the last stretch compares the head, and finds a
    record beyond it that no commit put there (a record after the head is a forged one: an
    append moves the head in its own transaction, and the head is re-read after the search).
    """
    head = session.get(AuditChainHead, chain)
    head_seq = head.seq if head else 0
    prev_hash = GENESIS_HASH
    if after_seq > 0:
        found = session.scalar(select(AuditEvent.hash).where(AuditEvent.chain == chain,
                                                             AuditEvent.seq == after_seq))
        if found is None:
            return ChainPage(chain, 0, head_seq, after_seq, None,
                             f"the log holds no record at seq {after_seq}: it was removed, "
                             "or the chain is not that long",
                             after_seq=after_seq, last_seq=after_seq, complete=False)
        prev_hash = found
    stmt = (select(AuditEvent).where(AuditEvent.chain == chain, AuditEvent.seq > after_seq)
            .order_by(AuditEvent.seq).limit(limit))
    if head is not None:
        stmt = stmt.where(AuditEvent.seq <= head_seq)
    expected_seq, count = after_seq + 1, 0
    for event in session.scalars(stmt):
        count += 1
        problem = _problem(event, expected_seq, prev_hash)
        if problem:
            return ChainPage(chain, count, head_seq, event.seq, event.event_id, problem,
                             after_seq=after_seq, last_seq=event.seq, complete=False)
        expected_seq, prev_hash = event.seq + 1, event.hash
    last_seq = expected_seq - 1
    if count == limit and (head is None or last_seq < head_seq):
        return ChainPage(chain, count, head_seq, after_seq=after_seq, last_seq=last_seq,
                         complete=False)
    end = _end_problem(session, chain, head, last_seq, prev_hash)
    if end is not None:
        return ChainPage(chain, count, head_seq, last_seq + 1, None, end,
                         after_seq=after_seq, last_seq=last_seq, complete=True)
    return ChainPage(chain, count, head_seq, after_seq=after_seq, last_seq=last_seq,
                     complete=True)


def _end_problem(session: Session, chain: str, head: AuditChainHead | None, last_seq: int,
                 last_hash: str) -> str | None:
    """Why the log's end does not match its head (the head as read at the start), or None."""
    if head is None:
        if last_seq:
            return (f"the log holds records up to seq {last_seq} but no chain head: the "
                    "head was removed, and with it the check of the end")
        return _empty_problem(session, chain)
    if head.seq != last_seq or head.hash != last_hash:
        return (f"chain head is at seq {head.seq} but the log ends at seq {last_seq}: "
                "records at the end were removed")
    beyond = session.scalar(select(func.max(AuditEvent.seq)).where(
        AuditEvent.chain == chain, AuditEvent.seq > head.seq))
    if beyond is not None:
        now = session.scalar(select(AuditChainHead.seq).where(AuditChainHead.chain == chain))
        if now is None or beyond > now:
            return (f"the log holds records up to seq {beyond} beyond its chain head (seq "
                    f"{now}): records were added outside Roster")
    return None
