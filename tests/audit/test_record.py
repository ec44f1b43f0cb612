"""The audit record function appends to a per-organization hash chain."""

from __future__ import annotations

import itertools

from sqlalchemy import select

from app.audit import compute_hash
from app.audit.log import GENESIS_HASH
from app.models import AuditEvent
from tests.conftest import make_tenant


def test_events_are_chained_per_organization(db):
    """Each event holds the previous hash of its own organization's chain, in sequence."""
    make_tenant(db, "acme")
    make_tenant(db, "globex")
    with db.transaction() as session:
        events = list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    chains: dict[str, list[AuditEvent]] = {}
    for event in events:
        chains.setdefault(event.chain, []).append(event)
    assert len(chains) == 2
    for chain in chains.values():
        assert chain[0].prev_hash == GENESIS_HASH
        assert [e.seq for e in chain] == list(range(1, len(chain) + 1))
        for prev, cur in itertools.pairwise(chain):
            assert cur.prev_hash == prev.hash
        for event in chain:
            assert compute_hash(event) == event.hash
