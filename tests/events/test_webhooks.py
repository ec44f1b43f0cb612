"""Webhook delivery to a real receiver on 127.0.0.1: signatures, order, retries, dead letters,
and a worker killed with SIGKILL mid-delivery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from app.db import utcnow
from app.events.delivery import WebhookConfig
from app.events.signature import sign, verify
from app.events.worker import run_once
from app.lifecycle import Trigger, deprovision_user
from app.models import User
from tests.conftest import OPERATOR, rows
from tests.events.receiver import SECRET, running_receiver
from tests.lifecycle.support import make_leaver, roster

ROSTER = str(Path(sys.executable).parent / "roster")


def _config(url: str, **overrides: int) -> WebhookConfig:
    base = WebhookConfig(urls=(url,), secret=SECRET, timeout_seconds=5, retry_base_seconds=1,
                         retry_max_seconds=2, dead_after_seconds=3600, lease_seconds=30,
                         batch_size=50, poll_interval_ms=50)
    return replace(base, **overrides)


def _leavers(db, tenant, n: int) -> list[str]:
    ids = [make_leaver(db, tenant, f"leaver{i}").user_id for i in range(n)]
    for user_id in ids:
        with db.transaction() as session:
            deprovision_user(session, session.get(User, user_id), OPERATOR,
                             trigger=Trigger.scim_active_false)
    return ids


def _sign_checkpoints(database_url: str) -> None:
    """Sign the chain heads now (their audit.checkpoint events join the outbox): a worker
    started within the checkpoint interval then adds no events of its own to count."""
    roster(database_url, "audit", "checkpoint")


def _outbox(db) -> list[tuple[str, str]]:
    return [(r.event_id, r.aggregate_id) for r in
            rows(db, "SELECT event_id, aggregate_id FROM outbox_events ORDER BY id")]


def _drain(db, config, until, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not until() and time.monotonic() < deadline:
        if not run_once(db, config, "test-worker"):
            time.sleep(0.05)
    assert until(), "deliveries did not finish in time"


def _in_order_per_aggregate(outbox, processed) -> bool:
    aggregate = dict(outbox)
    position = {event_id: i for i, (event_id, _) in enumerate(outbox)}
    last: dict[str, int] = {}
    for event_id in processed:
        agg = aggregate[event_id]
        if agg is not None and last.get(agg, -1) > position[event_id]:
            return False
        last[agg] = position[event_id]
    return True


def test_signature_round_trip_and_replay_window():
    """A receiver accepts a fresh signature and rejects a forged or stale one."""
    body = b'{"id":"e1"}'
    header = sign(SECRET, int(time.time()), body)
    assert verify(SECRET, header, body)
    assert not verify(SECRET, header, b'{"id":"e2"}')
    assert not verify("another-secret", header, body)
    stale = sign(SECRET, int(time.time()) - 3600, body)
    assert not verify(SECRET, stale, body, tolerance_seconds=300)
    # A forged signature with non-ASCII text is refused, not a TypeError of compare_digest.
    assert not verify(SECRET, f"t={int(time.time())},v1=\u00e9", body)


def test_every_event_arrives_signed_once_and_in_order_per_user(db, tenant):
    """Each outbox event reaches the receiver verified, once, in order per aggregate."""
    _leavers(db, tenant, 3)
    outbox = _outbox(db)
    with running_receiver() as receiver:
        config = _config(receiver.url)
        _drain(db, config, lambda: len(receiver.processed) == len(outbox))
    assert receiver.bad_signatures == 0
    assert sorted(receiver.ids()) == sorted(e for e, _ in outbox)
    assert _in_order_per_aggregate(outbox, receiver.processed)
    assert rows(db, "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'"
                )[0][0] == len(outbox)


def test_receiver_errors_are_retried_with_backoff(db, tenant):
    """After 500s the same event comes again later, with the same id, and then succeeds."""
    _leavers(db, tenant, 1)
    outbox = _outbox(db)
    with running_receiver(fail_first=2) as receiver:
        config = _config(receiver.url)
        _drain(db, config, lambda: len(receiver.processed) == len(outbox))
    ids = receiver.ids()
    assert len(ids) > len(outbox)
    assert ids[0] == ids[-len(outbox) - 1] or ids.count(ids[0]) >= 2
    retried = rows(db, "SELECT attempts, last_status FROM webhook_deliveries WHERE "
                       "event_id = :e", e=ids[0])[0]
    assert retried.attempts >= 2
    assert retried.last_status == 200
    assert _in_order_per_aggregate(outbox, receiver.processed)


def test_dead_letter_is_listed_and_redelivered(db, tenant, database_url):
    """Past the horizon a failing delivery is dead, listed by the CLI, and can be re-sent
    (its user's later deliveries, never attempted, are dead behind it)."""
    _leavers(db, tenant, 1)
    with running_receiver(fail_first=1000) as receiver:
        run_once(db, _config(receiver.url, dead_after_seconds=0), "test-worker")
        dead = rows(db, "SELECT id, event_id FROM webhook_deliveries WHERE status = 'dead' "
                        "AND attempts > 0")
        assert len(dead) == 1
        listed = roster(database_url, "events", "deliveries", "--dead")
        assert str(dead[0].event_id) in listed.output
        roster(database_url, "events", "redeliver", str(dead[0].id))
        receiver.fail_first = 0
        _drain(db, _config(receiver.url), lambda: dead[0].event_id in receiver.processed)
    assert rows(db, "SELECT status FROM webhook_deliveries WHERE id = :i",
                i=dead[0].id)[0][0] == "delivered"


def _start_worker(database_url: str, url: str, lease: int = 7) -> subprocess.Popen[bytes]:
    # The shortest lease the settings take with a 5 s POST timeout (lease > timeout + 1):
    # the POST a SIGKILL interrupts is still running when it comes, and its claim ends soon
    # after, for the restarted worker to take.
    env = {**os.environ, "ROSTER_DATABASE__URL": database_url, "ROSTER_APP__ENV": "test",
           "ROSTER_WEBHOOKS__URLS": url, "ROSTER_WEBHOOKS__SECRET": SECRET,
           "ROSTER_WEBHOOKS__LEASE_SECONDS": str(lease),
           "ROSTER_WEBHOOKS__TIMEOUT_SECONDS": "5", "ROSTER_WEBHOOKS__POLL_INTERVAL_MS": "50",
           "ROSTER_WEBHOOKS__BATCH_SIZE": "5"}
    return subprocess.Popen([ROSTER, "worker"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _wait(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_sigkill_mid_delivery_loses_nothing_and_duplicates_only_by_id(db, tenant,
                                                                      database_url):
    """Kill -9 while a POST is in flight; after a restart every event is seen once by id."""
    _leavers(db, tenant, 3)
    _sign_checkpoints(database_url)
    outbox = _outbox(db)
    with running_receiver(hang_on=4) as receiver:
        first = _start_worker(database_url, receiver.url)
        try:
            assert receiver.hanging.wait(30), "the worker never reached the 4th delivery"
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
        finally:
            if first.poll() is None:
                first.kill()
        receiver.release.set()
        second = _start_worker(database_url, receiver.url)
        try:
            done = _wait(lambda: len(receiver.processed) == len(outbox), 60)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(10)
    assert done, f"{len(receiver.processed)} of {len(outbox)} events arrived"
    assert sorted(receiver.processed) == sorted(e for e, _ in outbox)
    assert len(set(receiver.processed)) == len(receiver.processed)
    assert len(receiver.ids()) > len(outbox)  # the in-flight one came again, same id
    assert _in_order_per_aggregate(outbox, receiver.processed)
    assert rows(db, "SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'"
                )[0][0] == 0


def test_two_workers_together_deliver_each_event_exactly_once(db, tenant, database_url):
    """Two `roster worker` processes share the queue: no event twice, order kept per user."""
    _leavers(db, tenant, 4)
    _sign_checkpoints(database_url)
    outbox = _outbox(db)
    with running_receiver() as receiver:
        # A lease far longer than a round: a duplicate here could only come from a race.
        workers = [_start_worker(database_url, receiver.url, lease=60) for _ in range(2)]
        try:
            done = _wait(lambda: len(receiver.processed) == len(outbox), 60)
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(10)
    assert done, f"{len(receiver.processed)} of {len(outbox)} events arrived"
    assert sorted(receiver.ids()) == sorted(e for e, _ in outbox)
    assert _in_order_per_aggregate(outbox, receiver.processed)
    leased_by = {r.leased_by for r in rows(db, "SELECT leased_by FROM webhook_deliveries")}
    assert leased_by == {None}


def test_a_redirect_is_a_failure_and_is_not_followed():
    """A 302 from the endpoint: urllib turned the POST into a GET without the event, sent it
    (signed) to the Location, an internal address too, and counted its 200 as delivered."""
    import http.server
    import threading

    from app.events.delivery import Claimed
    from app.events.posting import post_event

    followed: list[str] = []

    class Redirecting(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/meta")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self):
            followed.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        item = Claimed(id=1, endpoint=f"http://127.0.0.1:{server.server_port}/hook", attempts=0,
                       event={"id": "evt-1", "type": "user.created", "data": {}})
        ok, status, _error, _wait = post_event(item, _config(item.endpoint))
    finally:
        server.shutdown()
        server.server_close()
    assert (ok, status) == (False, 302)
    assert followed == []


def test_an_event_committed_long_after_later_ones_is_still_fanned_out(db, tenant):
    """PostgreSQL hands outbox ids out at INSERT; rows appear at COMMIT. An event whose
    transaction commits minutes after later events were fanned out (a lock wait, a paused
    host) was skipped for good: the cursor passed every event older than 60 s. It now
    passes an id only once every transaction that could hold a lower one has ended."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: its ids become visible in id order")
    from sqlalchemy.orm import Session

    from app.events import emit
    from app.events.delivery import fan_out

    config = _config("http://127.0.0.1:9/hook")
    later = utcnow() + timedelta(minutes=5)  # long after every event was written
    with db.engine.connect() as slow:
        slow_tx = slow.begin()
        with Session(bind=slow) as session:
            emit(session, organization_id=tenant.org.id, type="user.updated",
                 aggregate_id="slow", payload={})
            session.flush()
        with db.transaction() as session:
            emit(session, organization_id=tenant.org.id, type="user.updated",
                 aggregate_id="quick", payload={})
        for _ in range(3):
            with db.transaction() as session:
                fan_out(session, config, later)
        slow_tx.commit()
    with db.transaction() as session:
        fan_out(session, config, later)
    fanned = rows(db, "SELECT o.aggregate_id FROM webhook_deliveries d JOIN outbox_events o "
                      "ON o.id = d.outbox_id ORDER BY o.id")
    assert sorted(r.aggregate_id for r in fanned) == ["quick", "slow"]


def test_the_worker_survives_a_transient_database_error(app, db, tenant):
    """A round that hits a lock timeout (SQLite busy, a PostgreSQL lock, as a restart or a
    lost connection would) costs that round: `roster worker` died of it before, and nothing
    was delivered until someone restarted it."""
    import threading

    from app.db import Database
    from app.events import emit
    from app.events.worker import run
    from tests.conftest import database_locked

    with db.transaction() as session:
        emit(session, organization_id=tenant.org.id, type="user.updated", aggregate_id="u1",
             payload={})
    impatient = (Database(db.url, busy_timeout_ms=50) if db.dialect == "sqlite" else
                 Database(db.url + ("&" if "?" in db.url else "?")
                          + "options=-c%20lock_timeout%3D100"))
    failures: list[BaseException] = []

    def work() -> None:
        try:
            run(impatient, _config(receiver.url), "w1", threading.Event(), until_idle=True)
        except BaseException as exc:  # the test reports it
            failures.append(exc)

    try:
        with running_receiver() as receiver:
            with database_locked(app, db, tables=("webhook_cursors",)):
                worker = threading.Thread(target=work)
                worker.start()
                time.sleep(0.6)  # rounds fail on the held lock meanwhile
                assert worker.is_alive(), failures
            worker.join(20)
            assert not worker.is_alive()
            assert failures == []
            assert len(receiver.processed) == 1
    finally:
        impatient.dispose()


def test_an_endpoint_taken_out_of_the_configuration_gets_nothing_more(db, tenant):
    """A URL removed from webhooks.urls (decommissioned, compromised) kept receiving its
    pending deliveries, signed, until they went dead."""
    import sqlalchemy as sa

    _leavers(db, tenant, 1)
    outbox = _outbox(db)
    with running_receiver(fail_first=1000) as old, running_receiver() as new:
        run_once(db, _config(old.url), "test-worker")
        assert len(old.requests) >= 1
        seen = len(old.requests)
        with db.engine.begin() as conn:  # due again at once
            conn.execute(sa.text("UPDATE webhook_deliveries SET next_attempt_at = :t"),
                         {"t": utcnow() - timedelta(seconds=1)})
        _drain(db, _config(new.url), lambda: len(new.processed) == len(outbox))
        run_once(db, _config(new.url), "test-worker")
        assert len(old.requests) == seen
    assert rows(db, "SELECT count(*) FROM webhook_deliveries WHERE endpoint = :u AND "
                    "status = 'pending'", u=old.url)[0][0] >= 1  # kept, listed


def _timed_post(endpoint: str, chunks: list[bytes], pause: float,
                before: Callable[[int], None] | None = None) -> tuple[tuple, float]:
    """post_event (timeout 1 s) to ``endpoint`` while a server on 127.0.0.1 (its port in
    the endpoint as {port}, and given to ``before``) answers the first request with
    ``chunks``, ``pause`` s apart; the result and the seconds it took."""
    import socket
    import threading

    from app.events.delivery import Claimed
    from app.events.posting import post_event

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_slowly() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            try:
                for chunk in chunks:
                    conn.sendall(chunk)
                    time.sleep(pause)
            except OSError:
                pass  # cut by the client

    threading.Thread(target=answer_slowly, daemon=True).start()
    if before is not None:
        before(port)
    item = Claimed(id=1, endpoint=endpoint.format(port=port), attempts=0,
                   event={"id": "evt-2", "type": "user.created", "data": {}})
    began = time.monotonic()
    try:
        result = post_event(item, _config(item.endpoint, timeout_seconds=1))
    finally:
        listener.close()
    return result, time.monotonic() - began


def test_a_receiver_that_trickles_its_answer_is_cut_at_the_timeout():
    """timeout_seconds bounds the whole POST: a receiver sending its 200 a byte every 0.3 s
    held the worker, and every other endpoint's deliveries, for as long as it liked."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Slow: " + b"y" * 40
    result, took = _timed_post("http://127.0.0.1:{port}/hook",
                               [bytes([b]) for b in answer], 0.3)
    assert result == (False, None, "no complete answer within 1 s", None)
    assert took < 3


def test_no_post_starts_that_could_outlast_the_lease(db, tenant):
    """A batch sent one POST after another outlived its 30 s lease: a second worker claimed
    the same deliveries and the receiver got them twice, out of order. A round now starts no
    POST that could end after the lease, and gives the rest back."""
    _leavers(db, tenant, 1)
    sent: list[int] = []

    def slow_receiver(item, config):  # the network: every answer takes its time
        sent.append(item.id)
        time.sleep(0.3)
        return True, 200, None

    tried = run_once(db, _config("http://127.0.0.1:9/hook", lease_seconds=2,
                                 timeout_seconds=1), "w1", slow_receiver)
    assert tried == len(sent) == 1
    left = rows(db, "SELECT status, leased_until, attempts FROM webhook_deliveries "
                    "WHERE id <> :i", i=sent[0])
    assert left
    assert {(r.status, r.leased_until, r.attempts) for r in left} == {("pending", None, 0)}


def test_a_url_http_client_cannot_send_is_refused_in_the_settings():
    """A non-ASCII path or an invalid IDNA host passed the settings and then raised inside
    the worker (UnicodeEncodeError), which stopped it with its batch's results unrecorded."""
    from app.errors import InvalidInput

    settings = {"webhooks": {"urls": "", "secret": SECRET, "timeout_seconds": 5,
                             "retry_base_seconds": 2, "retry_max_seconds": 600,
                             "dead_after_seconds": 86400, "lease_seconds": 30,
                             "batch_size": 50, "poll_interval_ms": 200}}
    for url in ("http://127.0.0.1:9/hooks/café", "http://" + "a" * 64 + ".example/hook",
                "ftp://example.com/hook"):
        with pytest.raises(InvalidInput):
            WebhookConfig.from_settings({"webhooks": {**settings["webhooks"], "urls": url}})
    ok = WebhookConfig.from_settings({"webhooks": {**settings["webhooks"],
                                                   "urls": "https://hooks.example/caf%C3%A9"}})
    assert ok.urls == ("https://hooks.example/caf%C3%A9",)


def test_a_slow_proxy_connect_is_cut_at_the_timeout(monkeypatch):
    """Through an https_proxy, a proxy trickling its CONNECT answer held the POST past its
    deadline: the socket was remembered only once connected. It is cut at the timeout."""
    from app.events import posting

    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)

    def through_proxy(port: int) -> None:  # the opener reads https_proxy when built
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{port}")
        monkeypatch.setattr(posting, "_OPENER", posting.build_opener())

    chunks = [b"HTTP/1.1 200 Connection established\r\n"] + [b"X-Slow: y\r\n"] * 20
    result, took = _timed_post("https://hooks.example/hook", chunks, 0.5, through_proxy)
    assert result == (False, None, "no complete answer within 1 s", None)
    assert took < 3


@pytest.mark.parametrize(("status", "asked", "wait"), [
    (429, "45", 45), (503, "HTTP-DATE+50", 50), (429, "99999999999999", 120),
    (429, "soon", None)])
def test_a_receivers_retry_after_defers_the_retry(db, tenant, status, asked, wait):
    """A 429 or 503 with Retry-After (RFC 9110 §10.2.3, seconds or an HTTP-date): the next
    try is not before it (at most retry_max_seconds away); the worker retried after its
    backoff of a second or two, and so hammered a receiver that asked for a pause."""
    import email.utils
    import http.server
    import threading

    from sqlalchemy import select

    from app.models.lifecycle import WebhookDelivery

    if asked.startswith("HTTP-DATE+"):
        asked = email.utils.formatdate(time.time() + int(asked.split("+")[1]), usegmt=True)

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(status)
            self.send_header("Retry-After", asked)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    _leavers(db, tenant, 1)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = _config(f"http://127.0.0.1:{server.server_port}/hook", retry_max_seconds=120)
        began = utcnow()
        assert run_once(db, config, "test-worker") >= 1
    finally:
        server.shutdown()
        server.server_close()
    with db.transaction() as session:
        tried = list(session.scalars(select(WebhookDelivery).where(
            WebhookDelivery.attempts == 1)))
        assert tried
        assert {t.last_status for t in tried} == {status}
        delays = [(t.next_attempt_at - began).total_seconds() for t in tried]
    if wait is None:  # unreadable: the backoff alone (retry_base_seconds 1)
        assert max(delays) <= 2
    else:
        assert min(delays) >= wait - 2
        assert max(delays) <= wait + 2
