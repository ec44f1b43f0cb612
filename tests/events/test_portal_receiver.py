"""A portal's webhook receiver written from the README alone (no Roster code): it checks
`Roster-Signature` as documented, the replay window, and the headers that name the event."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.conftest import rows
from tests.lifecycle.support import make_leaver, roster

SECRET = "portal-webhook-secret-from-the-vault"
TOLERANCE = 300  # README: reject if t is older than five minutes


def readme_verify(secret: str, header: str, body: bytes, now: float) -> bool:
    """README, Events to the portal: `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`
    (reject if `t` is older than five minutes)."""
    fields: dict[str, str] = {}
    for part in header.split(","):
        name, _, value = part.partition("=")
        fields[name.strip()] = value.strip()
    if not fields.get("t", "").isdigit() or "v1" not in fields:
        return False
    if now - int(fields["t"]) > TOLERANCE:
        return False
    expected = hmac.new(secret.encode(), fields["t"].encode() + b"." + body,
                        hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


@contextmanager
def portal_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An HTTP endpoint on loopback keeping each POST's raw body and headers."""
    seen: list[dict[str, Any]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                seen.append({"headers": dict(self.headers), "body": body,
                             "at": time.time()})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/roster-hooks", seen
    finally:
        server.shutdown()
        server.server_close()


def test_a_receiver_built_from_the_readme_verifies_every_webhook(db, tenant, database_url):
    """`roster worker` posts each outbox event once; each verifies with the README's recipe,
    is fresh, and its Roster-Event-Id / Idempotency-Key / Roster-Event-Type name the body's
    event; a changed body, another secret or an old timestamp fails the same recipe."""
    make_leaver(db, tenant)
    roster(database_url, "lifecycle", "deprovision", "--org", "acme", "leaver")
    roster(database_url, "audit", "checkpoint")  # so the worker signs none of its own
    outbox = [r.event_id for r in rows(db, "SELECT event_id FROM outbox_events ORDER BY id")]
    with portal_receiver() as (url, seen):
        roster(database_url, "worker", "--until-idle", ROSTER_WEBHOOKS__URLS=url,
               ROSTER_WEBHOOKS__SECRET=SECRET)
    assert sorted(json.loads(s["body"])["id"] for s in seen) == sorted(outbox)
    for request in seen:
        headers, body = request["headers"], request["body"]
        event = json.loads(body)
        assert readme_verify(SECRET, headers["Roster-Signature"], body, request["at"])
        assert headers["Roster-Event-Id"] == headers["Idempotency-Key"] == event["id"]
        assert headers["Roster-Event-Type"] == event["type"]
        assert headers["Roster-Delivery-Attempt"] == "1"
        assert not readme_verify(SECRET, headers["Roster-Signature"], body + b" ",
                                 request["at"])
        assert not readme_verify("another-secret", headers["Roster-Signature"], body,
                                 request["at"])
        assert not readme_verify(SECRET, headers["Roster-Signature"], body,
                                 request["at"] + TOLERANCE + 5)
    assert {json.loads(s["body"])["type"] for s in seen} >= {
        "grant.removed", "session.revoked", "user.deprovisioned"}
