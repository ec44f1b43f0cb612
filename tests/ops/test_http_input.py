"""Requests that arrive broken or too slowly, through a real gunicorn (`roster serve`, one
worker; on SQLite one request thread) over raw sockets: what a client library would never
send. None may hold a request thread, be half-processed, or end in a 500."""

from __future__ import annotations

import json
import socket
import time

from app.models import Directory
from app.ops.http_worker import RequestTimeout, _TimedSocket
from tests.api.conftest import make_key
from tests.conftest import rows
from tests.ops.test_ops import _answer, _free_port, _raw, _serve

USER = b'{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "cut@acme.com"}'


def _exchange(port: int, head: bytes, body: bytes, *,
              half_close: bool = True) -> tuple[str, dict[str, str], bytes]:
    """Send ``head`` and ``body``, close our side (the body ends there), read the answer."""
    return _raw(port, head + body, half_close=half_close, timeout=10)


def _post(path: str, token: str, extra: str) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\n{extra}\r\n").encode()


def test_broken_bodies_are_refused_in_the_protocols_format(database_url, db, tenant,
                                                          tmp_path):
    """A body shorter than its Content-Length (the client closed early) was processed and
    committed; a malformed chunk was a 500 with a traceback; a 404 or 401 whose short body
    the app drained became a 500. Now: 400 in SCIM's or the API's format, nothing written,
    and the refusal stands."""
    port = _free_port()
    log = tmp_path / "serve.log"
    proc = _serve(database_url, port, log)
    try:
        status, headers, body = _exchange(
            port, _post("/scim/v2/Users", tenant.token, f"Content-Length: {len(USER) + 40}\r\n"),
            USER)
        assert status.startswith("HTTP/1.1 400 ")
        assert headers["content-type"] == "application/scim+json"
        error = json.loads(body)
        assert (error["status"], error["scimType"]) == ("400", "invalidSyntax")
        assert "Content-Length" in error["detail"]
        org = b'{"slug": "cutshort", "name": "Cut short"}'
        operator = make_key(db, "operator")
        status, headers, body = _exchange(
            port, _post("/api/v1/orgs", operator.plaintext,
                        f"Content-Length: {len(org) + 9}\r\n"), org)
        assert status.startswith("HTTP/1.1 400 "), (status, body)
        assert headers["content-type"] == "application/problem+json"
        assert "Content-Length" in json.loads(body)["detail"]
        for chunked in (b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}}}\r\n0\r\n\r\n"):
            status, headers, body = _exchange(
                port, _post("/scim/v2/Users", tenant.token, "Transfer-Encoding: chunked\r\n"),
                chunked)
            assert status.startswith("HTTP/1.1 400 "), (chunked, status, body)
            assert json.loads(body)["scimType"] == "invalidSyntax"
        for path, expected in (("/scim/v2/Nothing", "404"), ("/api/v1/nothing", "404")):
            status, headers, body = _exchange(
                port, _post(path, tenant.token, "Content-Length: 500\r\n"), b"{}")
            assert status.split()[1] == expected, (path, status, body)
            assert json.loads(body)["status"] in (404, "404")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert rows(db, "SELECT count(*) FROM users")[0][0] == 0
    assert rows(db, "SELECT count(*) FROM organizations WHERE slug = 'cutshort'")[0][0] == 0
    assert "Traceback" not in log.read_text()


def _trickle_lasts(port: int) -> float:
    """Seconds until the server closes a connection whose header arrives a byte at a time."""
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=0.3) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        while time.monotonic() - began < 10:
            try:
                if sock.recv(65536) == b"":
                    break
            except TimeoutError:
                try:
                    sock.sendall(b"y")
                except OSError:  # reset: closed
                    break
    return time.monotonic() - began


def test_a_stalled_client_cannot_hold_the_server(database_url, db, tenant, tmp_path):
    """gunicorn read the rest of a request with no timeout: two connections that sent half a
    header line froze a SQLite deployment. Each request now has server.read_timeout seconds
    (1 here): stalled connections are closed, a body that never comes is a 408, and the
    server answers everyone else meanwhile."""
    port = _free_port()
    proc = _serve(database_url, port, tmp_path / "serve.log", READ_TIMEOUT="1")
    stalled = []
    try:
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Half: ")
            stalled.append(sock)
        began = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
            assert _answer(sock)[0] == "HTTP/1.1 200 OK"
        assert time.monotonic() - began < 8
        for sock in stalled:
            assert sock.recv(65536) == b""  # closed by the server, not by us
        assert _trickle_lasts(port) < 4  # one byte every 0.3 s: the deadline still holds
        status, headers, body = _exchange(
            port, _post("/scim/v2/Users", tenant.token, f"Content-Length: {len(USER) + 40}\r\n"),
            USER, half_close=False)
        assert status.startswith("HTTP/1.1 408 "), (status, body)
        assert headers["content-type"] == "application/scim+json"
        assert json.loads(body)["status"] == "408"
    finally:
        for sock in stalled:
            sock.close()
        proc.terminate()
        proc.wait(timeout=20)
    assert rows(db, "SELECT count(*) FROM users")[0][0] == 0


def test_only_reads_have_the_deadline():
    """Blocking stays blocking for sends (a large page to a slow reader is not cut off);
    a read waits at most until the request's deadline, then fails with RequestTimeout."""
    ours, theirs = socket.socketpair()
    with theirs, _TimedSocket.adopt(ours, 0.3) as timed:
        timed.setblocking(True)
        assert timed.gettimeout() is None
        timed.start()
        theirs.sendall(b"GET")
        assert timed.recv(10) == b"GET"
        assert timed.gettimeout() is None  # put back after the read
        began = time.monotonic()
        try:
            timed.recv(10)
            raise AssertionError("the read did not time out")
        except RequestTimeout:
            assert 0.1 < time.monotonic() - began < 2
        assert timed.gettimeout() is None  # sends wait as long as the reader needs


def test_a_request_without_host_or_with_two_credentials_is_400(database_url, db, tenant,
                                                              tmp_path):
    """RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host, or with
    one that is no host; gunicorn served it (a 200 list of users). Two Authorization fields
    (RFC 9110 §5.3: not a list) reached the app joined by a comma and were a 401 "not valid"
    for a valid token. All are now 400 in the protocol's format; HTTP/1.0 needs no Host."""
    port = _free_port()
    proc = _serve(database_url, port, tmp_path / "serve.log")
    auth = f"Authorization: Bearer {tenant.token}\r\n"
    operator = make_key(db, "operator").plaintext
    try:
        for path, head, media_type in (
                ("/scim/v2/Users", auth, "application/scim+json"),
                ("/scim/v2/Users", f"Host: a\r\n{auth}{auth}", "application/scim+json"),
                ("/api/v1/orgs", f"Authorization: Bearer {operator}\r\n",
                 "application/problem+json"),
                ("/sso/oidc/jwks", "", "application/json"),
                ("/scim/v2/Users", f"Host: a/b\r\n{auth}", "application/scim+json"),
                ("/api/v1/orgs", "Host: a b\r\n", "application/problem+json")):
            status, headers, body = _exchange(
                port, f"GET {path} HTTP/1.1\r\n{head}Connection: close\r\n\r\n".encode(), b"")
            assert status.startswith("HTTP/1.1 400 "), (path, head, status, body)
            assert headers["content-type"] == media_type
            assert headers["cache-control"] == "no-store"
            detail = json.loads(body)
            assert ("Host" if head.count("Authorization") < 2 else "Authorization") in str(
                detail)
        status, _headers, body = _exchange(
            port, f"GET /scim/v2/Users HTTP/1.0\r\n{auth}\r\n".encode(), b"")
        assert status.startswith("HTTP/1.0 200 "), (status, body)
        for host in ("a", "127.0.0.1:8000", "[::1]:80", "roster.example.com", ""):
            status, _headers, body = _exchange(
                port, f"GET /scim/v2/Users HTTP/1.1\r\nHost: {host}\r\n{auth}"
                      "Connection: close\r\n\r\n".encode(), b"")
            assert status.startswith("HTTP/1.1 200 "), (host, status, body)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_a_request_line_too_long_is_answered_in_its_paths_format(database_url, tmp_path):
    """gunicorn's 414 knew no path, so every one was a SCIM Error: an API client got a SCIM
    document, an OAuth client one it cannot read. The path the line starts with now picks
    the format, as for gunicorn's other errors; a SCIM path keeps its hint to POST .search."""
    port = _free_port()
    proc = _serve(database_url, port, tmp_path / "serve.log")
    try:
        for path, media_type in (("/api/v1/orgs?q=", "application/problem+json"),
                                 ("/oauth/token?x=", "application/json"),
                                 ("/api/v1/" + "a" * 20, "application/problem+json"),
                                 ("/scim/v2/Users?filter=", "application/scim+json")):
            line = f"GET {path}".encode() + b"x" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n"
            status, headers, body = _exchange(port, line, b"")
            assert status == "HTTP/1.1 414 URI Too Long", (path, status)
            assert headers["content-type"] == media_type, (path, headers)
            assert headers["cache-control"] == "no-store"
            document = json.loads(body)
            if path.startswith("/api/"):
                assert document["status"] == 414
                assert document["instance"].startswith("/api/v1/")
            elif path.startswith("/oauth/"):
                assert document["error"] == "invalid_request"
            else:
                assert "POST .search" in document["detail"]
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_options_asterisk_asks_about_the_server(database_url, tmp_path):
    """RFC 9110 §9.3.7: ``OPTIONS *`` (the asterisk-form target) applies to the server in
    general; it got the app's generic JSON 404. Now 200, an Allow header and no content. An
    OPTIONS on a resource is still its 405, another method with ``*`` is gunicorn's 400
    (RFC 9112 §3.2.4), and /metrics counts ``OPTIONS *`` under the route ``*`` (it was
    ``<unmatched>``, the label of paths no route knows)."""
    port = _free_port()
    log = tmp_path / "serve.log"
    proc = _serve(database_url, port, log)
    try:
        status, headers, body = _exchange(port, b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", b"")
        assert status == "HTTP/1.1 200 OK", (status, body)
        allowed = [m.strip() for m in headers["allow"].split(",")]
        assert {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} == set(allowed)
        assert headers["content-length"] == "0"
        assert body == b""
        status, headers, _ = _exchange(port, b"OPTIONS /api/v1/orgs HTTP/1.1\r\nHost: a\r\n"
                                             b"\r\n", b"")
        assert status.split()[1] == "405", status
        status, _, _ = _exchange(port, b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", b"")
        assert status.split()[1] == "400", status  # RFC 9112 §3.2.4: OPTIONS only
        # Counted under the target "*", not <unmatched> (a path no route knows).
        _, _, metrics = _exchange(port, b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n", b"")
        assert b'roster_http_requests_total{method="OPTIONS",route="*",status="200"}' \
            in metrics
        assert b'route="<unmatched>"' not in metrics
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert "Traceback" not in log.read_text()


def test_a_path_that_is_not_utf8_is_a_400_through_gunicorn(database_url, db, tenant, tmp_path):
    """gunicorn hands the path's bytes over as Latin-1 and Werkzeug put U+FFFD in place of
    those that are not UTF-8, so /directories/Caf%E9 named the directory "Caf\ufffd": the
    request as sent (RAW_URI) is read, and the answer is the API's 400 naming the path. The
    byte unescaped in the request line is gunicorn's 400 (RFC 9112 §3.2: no such byte may
    stand there), which was a SCIM Error: a problem document, as the path is the API's."""
    admin = make_key(db, "admin", tenant.org)
    with db.transaction() as session:
        session.get(Directory, tenant.directory.id).name = "Caf\ufffd"
    port = _free_port()
    proc = _serve(database_url, port, tmp_path / "serve.log")

    def get(path: bytes) -> tuple[str, dict[str, str], bytes]:
        return _exchange(port, b"GET " + path + b" HTTP/1.1\r\nHost: a\r\nAuthorization: "
                         b"Bearer " + admin.plaintext.encode() + b"\r\n\r\n", b"")

    try:
        for path in (b"/api/v1/orgs/acme/directories/Caf%E9",
                     b"/api/v1/orgs/acme/directories/Caf\xe9"):
            status, headers, body = get(path)
            assert status.startswith("HTTP/1.1 400 "), (path, status, body)
            assert headers["content-type"] == "application/problem+json", (path, body)
            problem = json.loads(body)
            assert problem["status"] == 400
            if b"%" in path:
                assert problem["errors"] == [{"field": "path", "detail": "not UTF-8"}]
        status, _, body = get(b"/api/v1/orgs/acme/directories/Caf%EF%BF%BD")
        assert status.startswith("HTTP/1.1 200 "), (status, body)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
