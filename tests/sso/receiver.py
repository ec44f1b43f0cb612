"""The portal's back-channel logout receiver: a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


@contextmanager
def logout_receiver(status: int = 200, on_post: Callable[[], None] | None = None, *,
                    answer: bytes | None = None, byte_every: float | None = None,
                    ) -> Iterator[tuple[str, list[str]]]:
    """Serve POST /backchannel; yields (URL, logout tokens received). Always shut down.

    ``on_post`` runs while the sender waits for the answer (to look at the database then).
    ``answer``: these bytes instead of a plain ``status`` answer, a byte every
    ``byte_every`` seconds if given (until the sender gives up or the server stops). A
    GET of any path is answered 200 (where a redirect would lead).
    """
    received: list[str] = []
    stopped = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            received.extend(form.get("logout_token", []))
            if on_post is not None:
                on_post()
            if answer is None:
                self.send_response(status)
                self.end_headers()
                return
            for i in range(len(answer)) if byte_every else [None]:
                if stopped.is_set():
                    return
                try:
                    self.wfile.write(answer if i is None else answer[i:i + 1])
                    self.wfile.flush()
                except OSError:  # the sender gave up
                    return
                if byte_every:
                    time.sleep(byte_every)
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/backchannel", received
    finally:
        stopped.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
