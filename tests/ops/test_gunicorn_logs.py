"""gunicorn's own log lines under `roster serve` are Roster's JSON lines, like the app's."""

from __future__ import annotations

import json
import socket
import urllib.request

import pytest

from tests.ops.test_ops import _free_port, _serve


def test_every_line_gunicorn_and_the_app_write_is_one_json_object(database_url, tmp_path):
    """Booting, the worker's start line, the access line of a request and the shutdown: each
    stderr line is a JSON object with Roster's fields; gunicorn's were its own text
    (`[2026-12-06 ...] [21852] [INFO] Booting worker ...`). A request has one access line
    (Roster's; gunicorn's access log stays off)."""
    port = _free_port()
    log_path = tmp_path / "serve.log"
    proc = _serve(database_url, port, log_path)
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz",
                                         headers={"X-Request-ID": "json-lines-check"})
        with urllib.request.urlopen(request, timeout=20) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    text = log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # fails on any other line
    assert lines
    assert all({"ts", "level", "logger", "msg", "request_id"} <= set(line) for line in lines)
    gunicorn = [line["msg"] for line in lines if line["logger"] == "gunicorn.error"]
    assert any(msg.startswith("Booting worker with pid") for msg in gunicorn), gunicorn
    assert any("request thread(s), GIL switch interval" in msg for msg in gunicorn)
    assert "Shutting down: Master" in gunicorn
    mine = [line for line in lines if line["request_id"] == "json-lines-check"]
    assert [(line["logger"], line["route"]) for line in mine] == [("roster.access", "/healthz")]


# A query credential, HTTP Basic credentials (base64 of "alice:S3cretBasic") and a bearer
# token, each sent where gunicorn itself logs it.
QUERY_SECRET, BASIC, BEARER = "S3cretQueryT0k", "YWxpY2U6UzNjcmV0QmFzaWM=", "rst_GunicornB3arer"


def _raw(port: int, data: bytes) -> bytes:
    """Send ``data`` as it is (gunicorn answers a malformed request itself) and read."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_gunicorn_masks_credentials_in_its_error_and_access_lines(database_url, tmp_path, fmt):
    """A malformed request line with ``?access_token=``, a malformed Authorization header
    (Basic, Bearer) and a request with a credential in its query: gunicorn's own warning
    quotes the line or header, its access log (when an operator turns it on) the request
    line; in both formats every one goes out masked, as Roster's own lines do."""
    port = _free_port()
    log_path, access_path = tmp_path / "serve.log", tmp_path / "access.log"
    proc = _serve(database_url, port, log_path, more_env={
        "ROSTER_LOGGING__FORMAT": fmt, "GUNICORN_CMD_ARGS": f"--access-logfile {access_path}"})
    try:
        answers = [
            _raw(port, f"GET /scim/v2/Users?access_token={QUERY_SECRET}\x01 HTTP/1.1\r\n"
                       "Host: t\r\n\r\n".encode()),
            _raw(port, f"GET /healthz HTTP/1.1\r\nHost: t\r\nAuthorization Basic {BASIC}"
                       "\r\n\r\n".encode()),
            _raw(port, f"GET /healthz HTTP/1.1\r\nHost: t\r\nAuthorization Bearer {BEARER}"
                       "\r\n\r\n".encode()),
            _raw(port, f"GET http://alice:{BEARER}@t/healthz?code={QUERY_SECRET} HTTP/1.1\r\n"
                       "Host: t\r\n"
                       "Connection: close\r\n\r\n".encode()),
        ]
        assert [a.split(b" ")[1] for a in answers] == [b"400", b"400", b"400", b"200"], answers
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    text, access = log_path.read_text(), access_path.read_text()
    assert text.count("Invalid request from ip=127.0.0.1") == 3, text
    assert "/healthz?code=" in access, access
    assert "Invalid HTTP request line: 'GET /scim/v2/Users?access_token=" in text, text
    for secret in (QUERY_SECRET, BASIC, BEARER, "GunicornB3arer"):
        assert secret not in text, text
        assert secret not in access, access
