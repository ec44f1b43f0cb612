"""A streamed response (the audit export) that fails after its 200 was sent, and gunicorn's
own lines about a request: under the real gunicorn."""

from __future__ import annotations

import http.client
import json
import socket
import struct
import time

import pytest

from app.audit.log import SYSTEM, record
from tests.api.conftest import make_key
from tests.ops.test_ops import _free_port, _serve
from tests.ops.test_production import _request_counts


def _audit_log_failing_at_row(db, tenant, rows: int, bad: int) -> None:
    """``rows`` audit records; the ``bad``-th holds data its OCSF form cannot be made of
    (a list where an object belongs; the log is append-only, so written so): an export fails
    there, after the earlier rows."""
    with db.transaction() as session:
        for n in range(rows):
            record(session, organization_id=tenant.org.id, action="test:stream", actor=SYSTEM,
                   subject_type="test", subject_id=f"s{n}", data=[1] if n == bad else None)


def _raw_get(port: int, path: str, headers: dict[str, str], version: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"GET {path} HTTP/{version}\r\nHost: x\r\n{head}\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _served(db, database_url, tmp_path):
    """An operator key and `roster serve` on a free port: (key, port, log path, process)."""
    port, log_path = _free_port(), tmp_path / "serve.log"
    return make_key(db, "operator"), port, log_path, _serve(database_url, port, log_path)


def test_an_export_that_fails_midway_is_logged_once_counted_aborted_and_ends_abnormally(
        database_url, db, tenant, tmp_path):
    """The export's 200 goes out before its rows are read. One that failed after 600 rows
    was logged and counted as a 200, gunicorn's traceback had request_id null, and over
    HTTP/1.0 the body ended after a whole row: a truncated export that read as complete.
    Now: one ERROR line with the request id, the access line says aborted, /metrics counts
    status "aborted", the body ends with a line no reader takes for a record, and an HTTP/1.1
    client fails on the transfer (no last chunk)."""
    _audit_log_failing_at_row(db, tenant, 700, 600)
    key, port, log_path, proc = _served(db, database_url, tmp_path)
    path = "/api/v1/audit/export?format=ocsf"
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", path, headers={**key.headers, "X-Request-ID": "export-11"})
        response = conn.getresponse()
        assert response.status == 200
        with pytest.raises(http.client.IncompleteRead):
            response.read()
        conn.close()
        raw = _raw_get(port, path, {**key.headers, "X-Request-ID": "export-10"}, "1.0")
        counts = _request_counts(port)
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200")
    *records, last = body.decode().rstrip("\n").split("\n")
    assert len([line for line in records if '"test:stream"' in line]) == 600
    assert last.startswith('"roster: export aborted')
    with pytest.raises(json.JSONDecodeError):
        json.loads(last)
    assert counts[("GET", "/api/v1/audit/export", "aborted")] == 2
    assert ("GET", "/api/v1/audit/export", "200") not in counts
    text = log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert sorted(line["request_id"] for line in errors) == ["export-10", "export-11"]
    assert all("AttributeError" in line["exc"] for line in errors)
    assert "Error handling request" not in text
    access = [line for line in lines if line["logger"] == "roster.access"
              and line["route"] == "/api/v1/audit/export"]
    assert sorted((line["request_id"], line["status"], line["aborted"]) for line in access
                  ) == [("export-10", 200, True), ("export-11", 200, True)]


def test_a_whole_export_is_logged_and_counted_200_when_it_ends(database_url, db, tenant,
                                                                tmp_path):
    """The access line and the sample of a streamed body are written when it ends: a
    complete export is a 200, as before, and so is a HEAD (a body closed unread)."""
    with db.transaction() as session:
        for n in range(5):
            record(session, organization_id=tenant.org.id, action="test:stream", actor=SYSTEM,
                   subject_type="test", subject_id=f"s{n}")
    key, port, _log, proc = _served(db, database_url, tmp_path)
    try:
        for fmt in ("csv", "jsonl", "ocsf"):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", f"/api/v1/audit/export?format={fmt}", headers=key.headers)
            response = conn.getresponse()
            assert response.status == 200
            assert b"export aborted" not in response.read()
            conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("HEAD", "/api/v1/audit/export?format=csv", headers=key.headers)
        assert conn.getresponse().status == 200  # its body is closed unread: no disconnect
        conn.close()
        # The worker counts a request when it closes the body, after the answer went out:
        # wait (bounded) for the HEAD's count rather than read /metrics before it lands.
        deadline = time.monotonic() + 15
        counts = _request_counts(port)
        while ("HEAD", "/api/v1/audit/export", "200") not in counts \
                and time.monotonic() < deadline:
            time.sleep(0.1)
            counts = _request_counts(port)
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    assert counts[("GET", "/api/v1/audit/export", "200")] == 3
    assert counts[("HEAD", "/api/v1/audit/export", "200")] == 1
    assert ("GET", "/api/v1/audit/export", "aborted") not in counts


def test_gunicorns_own_lines_about_a_request_carry_its_request_id(database_url, tmp_path):
    """At DEBUG gunicorn logs each request (``GET /path``) and its connection's end; those
    lines said request_id null. They carry the request's id, the client's X-Request-ID or the
    one Roster made (the same as the access line's)."""
    port = _free_port()
    log_path = tmp_path / "serve.log"
    proc = _serve(database_url, port, log_path, {"ROSTER_LOGGING__LEVEL": "DEBUG"})
    try:
        for headers in ({"X-Request-ID": "dbg-1", "Connection": "close"},
                        {"Connection": "close"}):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/healthz", headers=headers)
            response = conn.getresponse()
            response.read()
            conn.close()
            made = response.headers["X-Request-ID"]
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    lines = [json.loads(line) for line in log_path.read_text().splitlines()
             if line.startswith("{")]
    gunicorn = [line for line in lines if line["logger"] == "gunicorn.error"
                and line["msg"] == "GET /healthz"]
    assert [line["request_id"] for line in gunicorn] == ["dbg-1", made]
    assert made != "dbg-1"
    access = {line["request_id"] for line in lines if line["logger"] == "roster.access"
              and line["route"] == "/healthz"}
    assert access == {"dbg-1", made}


def _metrics_once_counted(port: int, route: str, proc) -> dict[tuple[str, str, str], float]:
    """/metrics once a request of ``route`` has been counted (a streamed body is counted when
    the server is done with it, after the client went away)."""
    deadline = time.monotonic() + 60
    while True:
        counts = _request_counts(port)
        if any(key[1] == route for key in counts) or time.monotonic() > deadline:
            return counts
        assert proc.poll() is None
        time.sleep(0.1)


def test_an_export_whose_client_disconnects_midway_is_counted_disconnected_not_200(
        database_url, db, tenant, tmp_path):
    """A client that closed its connection in the middle of a streamed export (a timeout, a
    cancelled download) was counted ``status="200"`` and logged as a complete 200: the
    export it never got looked delivered. The server's write fails on the reset connection
    and it closes the body before its end: counted ``status="disconnected"``, the access line
    says ``"disconnected": true`` (a client's doing: no ERROR line, no ``aborted``)."""
    with db.transaction() as session:  # ~8 MB of JSON Lines: more than the sockets buffer
        for n in range(4000):
            record(session, organization_id=tenant.org.id, action="test:stream", actor=SYSTEM,
                   subject_type="test", subject_id=f"s{n}", data={"pad": "x" * 2000})
    key, port, log_path, proc = _served(db, database_url, tmp_path)
    route = "/api/v1/audit/export"
    try:
        with socket.socket() as sock:
            # A small window, set before the handshake: the server's writes block long
            # before the body's end (its send buffer is at most 4 MiB: tcp_wmem).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(30)
            sock.connect(("127.0.0.1", port))
            head = "".join(f"{k}: {v}\r\n" for k, v in key.headers.items())
            sock.sendall(f"GET {route}?format=jsonl HTTP/1.1\r\nHost: x\r\n"
                         f"X-Request-ID: gone-1\r\n{head}\r\n".encode())
            received = b""
            while b"\r\n\r\n" not in received:
                received += sock.recv(4096)
            assert received.startswith(b"HTTP/1.1 200")
            # Closed with unread data and no linger: the peer gets a reset at once.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        counts = _metrics_once_counted(port, route, proc)
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    assert counts.get(("GET", route, "disconnected")) == 1, counts
    assert ("GET", route, "200") not in counts
    assert ("GET", route, "aborted") not in counts
    lines = [json.loads(line) for line in log_path.read_text().splitlines()
             if line.startswith("{")]
    access = [line for line in lines if line["logger"] == "roster.access"
              and line["route"] == route]
    assert [(line["request_id"], line["status"], line.get("disconnected"),
             line.get("aborted")) for line in access] == [("gone-1", 200, True, None)]
    assert not [line for line in lines if line["level"] == "ERROR"]
    assert "Traceback" not in log_path.read_text()
