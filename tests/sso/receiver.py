"""The portal's back-channel logout receiver: a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


@contextmanager
def logout_receiver(status: int = 200, on_post: Callable[[], None] | None = None,
                    ) -> Iterator[tuple[str, list[str]]]:
    """Serve POST /backchannel; yields (URL, logout tokens received). Always shut down.

    ``on_post`` runs while the sender waits for the answer (to look at the database then).
    """
    received: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode())
            received.extend(form.get("logout_token", []))
            if on_post is not None:
                on_post()
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/backchannel", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
