"""A real webhook receiver on 127.0.0.1 (http.server in a thread) that verifies signatures."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from app.events.signature import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify

SECRET = "whsec-test-0123456789abcdef"


@dataclass
class Receiver:
    """What the receiver saw; ``plan`` decides each answer by request number."""

    url: str = ""
    port: int = 0
    # Each verified request: idempotency key, event, path (with its query) and headers.
    requests: list[dict[str, Any]] = field(default_factory=list)
    processed: list[str] = field(default_factory=list)
    bad_signatures: int = 0
    fail_first: int = 0
    hang_on: int | None = None
    hanging: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, headers: Any, body: bytes, path: str = "") -> int:
        """Verify, record, dedupe by idempotency key; answer 500 or hang when planned."""
        if not verify(SECRET, headers.get(SIGNATURE_HEADER, ""), body):
            with self.lock:
                self.bad_signatures += 1
            return 401
        event = json.loads(body)
        with self.lock:
            number = len(self.requests) + 1
            self.requests.append({"id": headers.get(IDEMPOTENCY_HEADER), "event": event,
                                  "path": path, "headers": dict(headers)})
            if number <= self.fail_first:
                return 500
            if event["id"] not in self.processed:
                self.processed.append(event["id"])
        if number == self.hang_on:
            self.hanging.set()
            self.release.wait(30)
        return 200

    def ids(self) -> list[str]:
        """Idempotency keys in arrival order (with repeats)."""
        with self.lock:
            return [r["id"] for r in self.requests]


@contextmanager
def running_receiver(port: int = 0, **plan: Any) -> Iterator[Receiver]:
    """Serve a Receiver on a loopback port (a free one by default) for the block."""
    receiver = Receiver(**plan)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = receiver.handle(self.headers, body, self.path)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:  # the worker was killed while we held the request
                pass

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    receiver.url = f"http://127.0.0.1:{receiver.port}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
