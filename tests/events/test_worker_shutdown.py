"""`roster worker` told to stop (SIGTERM) while a webhook POST is in flight."""

from __future__ import annotations

import signal

from tests.conftest import rows
from tests.events.receiver import running_receiver
from tests.events.test_webhooks import _leavers, _outbox, _sign_checkpoints, _start_worker


def test_sigterm_mid_batch_finishes_the_post_in_flight_and_gives_the_rest_back(
        db, tenant, database_url):
    """SIGTERM while the batch's first POST hangs: the worker went on to POST the whole
    batch (up to the lease's end with a slow receiver, past a container's stop timeout and
    into its SIGKILL). Now it records the POST in flight, starts no other, releases the
    rest of its claims at once (the next worker need not wait for the lease) and exits 0."""
    _leavers(db, tenant, 3)
    _sign_checkpoints(database_url)
    assert len(_outbox(db)) > 1
    with running_receiver(hang_on=1) as receiver:
        worker = _start_worker(database_url, receiver.url, lease=60)
        try:
            assert receiver.hanging.wait(30), "the worker never posted"
            worker.send_signal(signal.SIGTERM)
            receiver.release.set()
            assert worker.wait(30) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
        assert len(receiver.requests) == 1
    deliveries = rows(db, "SELECT status, leased_by, attempts FROM webhook_deliveries "
                          "ORDER BY id")
    assert len(deliveries) > 1
    assert {d.leased_by for d in deliveries} == {None}
    assert sorted((d.status, d.attempts) for d in deliveries) == \
        [("delivered", 1)] + [("pending", 0)] * (len(deliveries) - 1)
