"""Two `roster worker` processes (nodes) finding the periodic checkpoint due at once sign
each chain head once (PostgreSQL: several workers share the database)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit.checkpoints import checkpoint_if_due
from app.audit.signing import SigningKey, key_id_of
from tests.conftest import rows
from tests.lockwait import in_flight
from tests.threads import background


def _key() -> SigningKey:
    private = Ed25519PrivateKey.generate()
    return SigningKey(private=private, key_id=key_id_of(private.public_key()))


def test_two_workers_due_at_once_write_one_checkpoint_per_head(db, dialect, tenant):
    """Worker A writes the due checkpoints and has not committed; worker B's round finds
    them due too (it reads before A's commit): it leaves the round to A, so each head is
    signed once and the portal gets one audit.checkpoint. Both wrote them, twice."""
    if dialect != "postgresql":
        pytest.skip("concurrent writers are PostgreSQL's (SQLite has one at a time)")
    key = _key()

    def round_() -> int:
        with db.transaction() as session:
            return len(checkpoint_if_due(session, key, 3600))

    with in_flight(db, lambda session: checkpoint_if_due(session, key, 3600)):
        worker_b, outcome = background(round_, start=True)
        worker_b.join(30)
    assert outcome["result"] == 0, outcome
    heads = rows(db, "SELECT count(*) FROM audit_chain_heads WHERE seq > 0")[0][0]
    assert heads >= 1
    assert rows(db, "SELECT count(*) FROM audit_checkpoints")[0][0] == heads
    assert rows(db, "SELECT count(*) FROM outbox_events WHERE type = 'audit.checkpoint' "
                    "AND organization_id = :o", o=tenant.org.id)[0][0] == 1
    assert round_() == 0, "not due again within the interval"
