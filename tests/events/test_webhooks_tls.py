"""Webhooks over TLS: a receiver whose certificate the worker cannot verify gets nothing."""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from app.events.delivery import Claimed, WebhookConfig
from app.events.posting import Posted, post_event
from tests.events.receiver import SECRET
from tests.tls_certs import self_signed


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as files."""
    return self_signed(tmp_path, ["127.0.0.1"], ca=False)


def _serve_tls(handler: type[BaseHTTPRequestHandler], cert_file: Path,
               key_file: Path) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _post_to(handler: type[BaseHTTPRequestHandler], cert_file: Path, key_file: Path, *,
             timeout_seconds: int, stop: threading.Event | None = None) -> tuple[Posted, float]:
    """post_event to a TLS receiver served by ``handler``; the outcome and the seconds it
    took (``stop`` is set before the receiver is shut down)."""
    server = _serve_tls(handler, cert_file, key_file)
    url = f"https://127.0.0.1:{server.server_address[1]}/hook"
    config = replace(WebhookConfig(urls=(url,), secret=SECRET),
                     timeout_seconds=timeout_seconds)
    began = time.monotonic()
    try:
        posted = post_event(Claimed(id=1, endpoint=url, attempts=0, event={
            "id": "evt-tls", "type": "user.created", "data": {}}), config)
    finally:
        if stop is not None:
            stop.set()
        server.shutdown()
        server.server_close()
    return posted, time.monotonic() - began


def test_a_receiver_with_an_untrusted_certificate_gets_no_event(tmp_path):
    """https to a self-signed receiver: the handshake fails (a failure to retry, its reason
    in last_error) before any byte of the event or its signature is sent."""
    cert_file, key_file = _certificate(tmp_path)
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    posted, _took = _post_to(Handler, cert_file, key_file, timeout_seconds=3)
    assert (posted.ok, posted.status) == (False, None)
    assert "CERTIFICATE_VERIFY_FAILED" in (posted.error or "")
    assert received == []


def test_an_https_receiver_that_trickles_its_answer_is_cut_at_the_timeout(tmp_path,
                                                                           monkeypatch):
    """timeout_seconds bounds the whole POST over TLS too. The deadline shut down the TCP
    socket remembered at connect, but wrapping it for TLS detaches that socket object (its
    descriptor moves to the TLS socket), so the shutdown did nothing: an https receiver
    (a trusted one) sending its answer a byte every 0.2 s held the worker as long as it
    liked."""
    cert_file, key_file = _certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # the receiver is trusted
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            for byte in b"HTTP/1.1 204 No Content\r\n" + b"X-Slow: y\r\n" * 40:
                if stop.is_set():
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.2)

        def log_message(self, *args: object) -> None:
            return

    posted, took = _post_to(Handler, cert_file, key_file, timeout_seconds=1, stop=stop)
    assert (posted.ok, posted.status, posted.error) == (
        False, None, "no complete answer within 1 s")
    assert took < 3
