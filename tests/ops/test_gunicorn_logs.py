"""gunicorn's own log lines under `roster serve` are Roster's JSON lines, like the app's."""

from __future__ import annotations

import json
import urllib.request

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
        with urllib.request.urlopen(request, timeout=5) as r:
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
