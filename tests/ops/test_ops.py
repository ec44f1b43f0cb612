"""Health, readiness, metrics, request ids and structured logs."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from app import create_app, migrate
from app.log_throttle import EveryInterval
from app.migrate import upgrade
from app.settings import ROOT
from tests.conftest import app_overrides


def test_healthz_is_200(client):
    """Liveness answers 200 while the process is up."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_is_200_when_migrated(client):
    """Readiness is 200 on a migrated database."""
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"


def test_readyz_is_503_before_migrations(fresh_url):
    """An unmigrated database is not ready, and says why."""
    app = create_app(app_overrides(fresh_url))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["reason"] == "migrations not at head"


def test_readyz_is_200_on_a_database_a_newer_release_migrated(fresh_url, caplog):
    """A rolling deploy runs the new release's migration first: the old nodes serve on and
    stay in the balancer (the old code took every one of them out at once), while a
    database behind the code is still 503. Probing logs nothing (Alembic logged two INFO
    lines per probe)."""
    upgrade(fresh_url)
    app = create_app(app_overrides(fresh_url))
    with app.extensions["roster.db"].engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with caplog.at_level(logging.INFO):
        response = app.test_client().get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert (body["status"], body["revision"], body["head"]) == ("ok", "9999",
                                                                migrate.code_head())
    assert not [r for r in caplog.records if r.name.startswith("alembic")]
    with app.extensions["roster.db"].engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
    assert app.test_client().get("/readyz").status_code == 503


def test_requests_before_migrations_are_503_in_their_protocol(fresh_url, caplog, monkeypatch):
    """Before `roster db upgrade`, SCIM and /api answer a retryable 503 in their own error
    format, not a 500, and the log says what to run (no traceback)."""
    monkeypatch.setattr(migrate, "NOT_READY_LOG", EveryInterval(60.0))
    client = create_app(app_overrides(fresh_url)).test_client()
    bearer = {"Authorization": "Bearer rst_not_checked_yet"}
    with caplog.at_level(logging.INFO):
        scim = client.get("/scim/v2/Users", headers=bearer)
        api = client.get("/api/v1/orgs", headers=bearer)
    assert (scim.status_code, scim.mimetype) == (503, "application/scim+json")
    assert scim.get_json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert scim.get_json()["status"] == "503"
    assert (api.status_code, api.mimetype) == (503, "application/problem+json")
    assert scim.headers["Retry-After"] == api.headers["Retry-After"] == "30"
    messages = [r.getMessage() for r in caplog.records]
    assert sum("run `roster db upgrade`" in m for m in messages) == 1  # once, not per request
    assert not [r for r in caplog.records if r.exc_info]


def test_a_missing_table_at_the_migration_head_stays_a_500(fresh_url):
    """Only a schema behind (or ahead of) the code's migrations is 'not ready': a table
    missing from a database at the head is a fault, and answered as one."""
    upgrade(fresh_url)
    app = create_app(app_overrides(fresh_url))
    with app.extensions["roster.db"].engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE directory_tokens CASCADE"
                                   if connection.dialect.name == "postgresql"
                                   else "DROP TABLE directory_tokens")
    response = app.test_client().get("/scim/v2/Users", headers={"Authorization": "Bearer x"})
    assert response.status_code == 500
    assert response.get_json()["detail"].startswith("internal error; quote request id")


def test_readyz_is_503_when_database_unreachable(tmp_path):
    """An unreachable database gives 503, not 500."""
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"
    app = create_app(app_overrides(url))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["reason"] == "database unreachable"


def test_metrics_count_requests_by_route_and_status(client):
    """Prometheus text has request counters and latency histograms per route."""
    client.get("/healthz")
    client.get("/scim/v2/ServiceProviderConfig")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'roster_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'route="/scim/v2/ServiceProviderConfig",status="401"' in text
    assert "roster_http_request_duration_seconds_bucket" in text


def test_metrics_content_type_names_its_charset_once(client):
    """/metrics said ``text/plain; version=1.0.0; charset=utf-8; charset=utf-8``: Werkzeug
    added a charset to prometheus_client's type, which has one. A parameter given twice is
    an error (RFC 6838 §4.3), and Go's mime.ParseMediaType (Prometheus' scraper) refuses
    it: the scrape then fails or falls back. Now the exposition type, as prometheus_client
    names it."""
    from prometheus_client import CONTENT_TYPE_LATEST

    content_type = client.get("/metrics").headers["Content-Type"]
    assert content_type == CONTENT_TYPE_LATEST
    assert content_type.count("charset") == 1


def test_metrics_count_every_request_of_a_route_once(client):
    """Repeated requests of one route and status add one each to the same series."""
    series = 'roster_http_requests_total{method="GET",route="/readyz",status="200"} '
    count = 'roster_http_request_duration_seconds_count{method="GET",route="/readyz"} '

    def values() -> tuple[float, float]:
        text = client.get("/metrics").get_data(as_text=True)
        found = {line.split(" ")[0] + " ": float(line.rsplit(" ", 1)[1])
                 for line in text.splitlines() if line.startswith((series, count))}
        return found.get(series, 0.0), found.get(count, 0.0)

    before = values()
    for _ in range(3):
        assert client.get("/readyz").status_code == 200
    assert values() == (before[0] + 3, before[1] + 3)


def test_a_wrong_method_on_a_known_route_is_counted_under_its_rule(client):
    """A 405 names the URL rule the path matched (which endpoint gets wrong methods), a
    path matching no rule stays ``<unmatched>``: the label's values stay the app's rules."""
    assert client.delete("/healthz").status_code == 405
    assert client.put("/api/v1/orgs/o-1/units").status_code == 405
    assert client.delete("/no/such/path").status_code == 404
    text = client.get("/metrics").get_data(as_text=True)
    assert 'roster_http_requests_total{method="DELETE",route="/healthz",status="405"}' in text
    assert 'roster_http_requests_total{method="PUT",route="/api/v1/orgs/<org_id>/units",' \
           'status="405"}' in text
    assert 'roster_http_requests_total{method="DELETE",route="<unmatched>",status="404"}' \
        in text
    assert 'route="<unmatched>",status="405"' not in text


def test_request_id_is_honoured_or_generated(client):
    """X-Request-ID is echoed back; a missing or malformed one is replaced."""
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers[
        "X-Request-ID"] == "abc-123"
    generated = client.get("/healthz").headers["X-Request-ID"]
    assert len(generated) == 32
    bad = client.get("/healthz", headers={"X-Request-ID": "x" * 500}).headers["X-Request-ID"]
    assert bad != "x" * 500


def test_logs_are_json_with_request_id_and_no_token(app, tenant, client, caplog):
    """Each access line is one JSON object carrying the request id; tokens never appear."""
    from app.observability import JsonFormatter

    caplog.set_level(logging.INFO, logger="roster.access")
    headers = {**tenant.headers, "X-Request-ID": "req-42"}
    client.get("/scim/v2/ServiceProviderConfig", headers=headers)
    formatter = JsonFormatter()
    lines = [formatter.format(r) for r in caplog.records if r.name == "roster.access"]
    assert lines
    parsed = [json.loads(line) for line in lines]
    assert any(p.get("route") == "/scim/v2/ServiceProviderConfig" for p in parsed)
    assert all(tenant.token not in line for line in lines)


def test_json_lines_carry_each_records_own_time_and_extras_in_order():
    """The formatter writes each second's timestamp once and reuses it; records of different
    seconds (and milliseconds) still carry their own time, and extras keep their order."""
    from app.observability import JsonFormatter

    formatter = JsonFormatter()
    lines = []
    for second, msecs in ((1_700_000_000, 123), (1_700_000_000, 987), (1_700_000_061, 500),
                          (1_700_000_000, 1)):
        record = logging.LogRecord("roster.access", logging.INFO, __file__, 1, "GET / 200",
                                   None, None)
        record.created, record.msecs = second + msecs / 1000, msecs
        record.method, record.route, record.status = "GET", "/", 200
        lines.append(json.loads(formatter.format(record)))
    assert [line["ts"] for line in lines] == [
        "2023-11-14T22:13:20.123Z", "2023-11-14T22:13:20.987Z", "2023-11-14T22:14:21.500Z",
        "2023-11-14T22:13:20.001Z"]
    assert list(lines[0])[-3:] == ["method", "route", "status"]


def _root_handler(monkeypatch: pytest.MonkeyPatch, *extra: logging.Handler):
    """Roster's server logging alone on the root logger (pytest's own handlers set aside),
    writing to a StringIO: the buffered JSON handler with its request id filter."""
    import io

    from app.observability import BufferedStreamHandler, JsonFormatter, RequestIdFilter

    stream = io.StringIO()
    handler = BufferedStreamHandler(stream, flush_ms=5000)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    monkeypatch.setattr(logging.root, "handlers", [handler, *extra])
    monkeypatch.setattr(logging.root, "level", logging.INFO)
    # The SSO tests' canaille server leaves a filter on the root logger and sets it to
    # WARNING; loggers cache isEnabledFor, and only setLevel clears that cache.
    monkeypatch.setattr(logging.root, "filters", [])
    logging.root.manager._clear_cache()
    return handler, stream


def test_access_lines_written_directly_match_the_logging_path(app, monkeypatch):
    """With only Roster's buffered JSON handler listening, the access line skips the logging
    machinery, and comes out as the Logger.info path writes it: same keys in the same
    order, same values, a millisecond UTC timestamp."""
    import re

    from flask import g

    from app.observability import AccessLog

    access = AccessLog()
    context = app.test_request_context()
    context.push()
    g.request_id = "req-1"  # what the logging path's filter reads
    handler, stream = _root_handler(monkeypatch)
    assert access._direct_handler() is handler
    access.write("GET", "/scim/v2/Users/<user_id>", 200, 1.25, "req-1")
    handler.flush()
    direct = json.loads(stream.getvalue())

    other = logging.NullHandler()  # a second handler: the record must reach it too
    handler, stream = _root_handler(monkeypatch, other)
    assert access._direct_handler() is None
    access.write("GET", "/scim/v2/Users/<user_id>", 200, 1.25, "req-1")
    handler.flush()
    logged = json.loads(stream.getvalue())
    context.pop()

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", direct["ts"])
    assert list(direct) == list(logged) == ["ts", "level", "logger", "msg", "method", "route",
                                            "status", "duration_ms", "request_id"]
    assert {**direct, "ts": None} == {**logged, "ts": None}
    assert direct["msg"] == "GET /scim/v2/Users/<user_id> 200"


def test_access_line_takes_the_logging_path_when_anything_else_would_see_it(monkeypatch):
    """A filter or handler on the way, a disabled level or a text format all need the real
    record; the direct line is only for the server's plain configuration."""
    from app.observability import AccessLog

    access = AccessLog()
    handler, _stream = _root_handler(monkeypatch)
    assert access._direct_handler() is handler
    monkeypatch.setattr(logging.getLogger("roster"), "handlers", [logging.NullHandler()])
    assert access._direct_handler() is None
    monkeypatch.setattr(logging.getLogger("roster"), "handlers", [])
    monkeypatch.setattr(access.logger, "filters", [logging.Filter("x")])
    assert access._direct_handler() is None
    monkeypatch.setattr(access.logger, "filters", [])
    handler.setFormatter(logging.Formatter("%(message)s"))
    assert access._direct_handler() is None
    from app.observability import JsonFormatter
    handler.setFormatter(JsonFormatter())
    monkeypatch.setattr(logging.root, "level", logging.WARNING)
    logging.getLogger("roster.access").manager._clear_cache()
    assert access._direct_handler() is None


def test_requests_leave_direct_access_lines_with_their_request_id(app, client, monkeypatch):
    """Through the app: each request's access line reaches the handler with its route,
    status and request id."""
    handler, stream = _root_handler(monkeypatch)
    logging.getLogger("roster.access").manager._clear_cache()
    client.get("/healthz", headers={"X-Request-ID": "direct-1"})
    client.get("/nothing-here", headers={"X-Request-ID": "direct-2"})
    handler.flush()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "roster.access"]
    assert [(a["request_id"], a["route"], a["status"]) for a in access] == [
        ("direct-1", "/healthz", 200), ("direct-2", "<unmatched>", 404)]


def test_redaction_masks_secrets_in_messages():
    """Bearer tokens, Roster tokens and password fields are masked in log text."""
    from app.observability import redact

    text = redact('Authorization: Bearer abc.def rst_XYZ123 rk_KEY9 {"password": "hunter2"}')
    assert "abc.def" not in text
    assert "rst_XYZ123" not in text
    assert "rk_KEY9" not in text
    assert "hunter2" not in text


@pytest.mark.parametrize(("line", "secret"), [
    ("bEaReR abc.def", "abc.def"), ("key rst_XYZ123", "XYZ123"), ("rk_KEY9 used", "KEY9"),
    ("rsa_TOKEN7 used", "TOKEN7"), ('{"Password": "hunter2"}', "hunter2"),
    ("client_secret=s3cr3t", "s3cr3t"), ("TOKEN: abc123", "abc123"),
    ("authorization=Basic_xyz", "Basic_xyz"), ("client rss_SECRET8 pasted", "SECRET8"),
    ("rat_ACCESS5 used", "ACCESS5"), ("rrt_REFRESH6 used", "REFRESH6"),
    ("hint eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", "eyJzdWIiOiJ4In0"),
    ("{'access_token': 'opaque-1', 'token_type': 'Bearer'}", "opaque-1"),
    ("GET https://idp.example/cb?state=s1&code=AuthC0de9 failed", "AuthC0de9"),
    ("POST https://prod.logic.azure.com/wf?api-version=1&sig=S1gVal7&sv=1", "S1gVal7"),
    ("cannot fetch https://idp.example/md?apikey=K3yVal5: refused", "K3yVal5"),
    ("Authorization: Basic YWxpY2U6czNjcmV0", "YWxpY2U6czNjcmV0"),
    ("Invalid HTTP Header: 'Proxy-Authorization Basic YWxpY2U6czNjcmV0'", "YWxpY2U6czNjcmV0"),
    ("{'Authorization': 'SSWS 00aBcD3fGh'}", "00aBcD3fGh"),
    ("Cookie: roster_session=S3ssi0nV4l; theme=dark", "S3ssi0nV4l"),
    ("X-Api-Key: K3yH3ader9", "K3yH3ader9"),
])
def test_each_kind_of_secret_is_masked_on_its_own(line, secret):
    """Every pattern still applies when its secret is the only one in the line."""
    from app.observability import redact

    assert secret not in redact(line)


def test_a_database_error_reaches_the_log_without_the_values_it_is_about(db):
    """A logged database error names its statement but not its values: SQLAlchemy's
    parameters are hidden, PostgreSQL's DETAIL line (the duplicate key) is masked."""
    import sqlalchemy as sa

    from app.observability import redact

    secret = "digest-of-a-token-0042"
    with db.engine.connect() as conn:
        conn.execute(sa.text("CREATE TEMPORARY TABLE held (c TEXT PRIMARY KEY)"))
        conn.execute(sa.text("INSERT INTO held (c) VALUES (:c)"), {"c": secret})
        with pytest.raises(sa.exc.IntegrityError) as caught:
            conn.execute(sa.text("INSERT INTO held (c) VALUES (:c)"), {"c": secret})
        conn.rollback()
    logged = redact(str(caught.value))
    assert "INSERT INTO held" in logged
    assert secret not in logged


def test_a_line_without_secrets_is_kept_as_it_is():
    """An access log line has nothing to mask and comes back unchanged."""
    from app.observability import redact

    assert redact("GET /scim/v2/Users 200") == "GET /scim/v2/Users 200"
    for line in ("authorization failed for basic user", "the session cookie expired",
                 "missing Authorization header"):
        assert redact(line) == line
    assert redact("GET /scim/v2/Users?startIndex=1&count=10 200") == \
        "GET /scim/v2/Users?startIndex=1&count=10 200"
    # A webhook key's masked value, and the ':' after a URL, are the line's own.
    assert redact("delivery 7 to http://h.example/in?code=***: pending") == \
        "delivery 7 to http://h.example/in?code=***: pending"
    assert redact("{'token_type': 'Bearer', 'expires_in': 600}") == \
        "{'token_type': 'Bearer', 'expires_in': 600}"


def test_the_text_format_masks_secrets_as_the_json_lines_do():
    """logging.format = "text" writes the same message with the same values masked."""
    from app.observability import TextFormatter

    record = logging.LogRecord("authlib", logging.DEBUG, __file__, 1, "Issue token %s", (
        {"access_token": "rat_ACCESS5", "refresh_token": "opaque-2"},), None)
    line = TextFormatter("%(levelname)s %(name)s %(message)s").format(record)
    assert line.startswith("DEBUG authlib Issue token {")
    assert "ACCESS5" not in line
    assert "opaque-2" not in line


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_buffered_log_lines_go_out_together_and_warnings_at_once():
    """INFO lines wait for the flush interval; a WARNING is written (with them) at once."""
    import io

    from app.observability import BufferedStreamHandler

    stream = io.StringIO()
    handler = BufferedStreamHandler(stream, flush_ms=5000)
    logger = logging.getLogger("roster.test.buffered")
    logger.propagate, logger.level = False, logging.INFO
    logger.addHandler(handler)
    try:
        logger.info("first")
        logger.info("second")
        assert stream.getvalue() == ""
        logger.warning("third")
        assert stream.getvalue().splitlines() == ["first", "second", "third"]
        logger.info("fourth")
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert stream.getvalue().splitlines()[-1] == "fourth"


def _raw(port: int, request: bytes, *, half_close: bool = False,
         timeout: float = 5) -> tuple[str, dict[str, str], bytes]:
    """Send bytes as they are (``half_close``: then end our side, and so the body); the
    status line, headers and body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


def _assert_gunicorn_errors_in_protocol_format(port: int) -> None:
    long_line = b"GET /scim/v2/Users?filter=" + b"x" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n"
    status, headers, body = _raw(port, long_line)
    assert status == "HTTP/1.1 414 URI Too Long"
    assert headers["content-type"] == "application/scim+json"
    error = json.loads(body)
    assert error["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert error["status"] == "414"
    assert "POST .search" in error["detail"]
    # A 414 is heuristically cacheable (RFC 9111 §4.2.2); the API's and OAuth's own errors
    # say no-store, and so do gunicorn's documents.
    assert headers["cache-control"] == "no-store"
    huge_header = b"GET /scim/v2/Users HTTP/1.1\r\nHost: a\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n"
    status, headers, body = _raw(port, huge_header)
    assert status.startswith("HTTP/1.1 431 ")
    assert json.loads(body)["status"] == "431"
    # Refused in the headers, before gunicorn kept the request: the request line's path
    # still decides the format.
    for path, media_type in (("/api/v1/orgs", "application/problem+json"),
                             ("/sso/acme/acs", "text/html")):
        for head in (b"X-Big: " + b"y" * 9000, b"X-Nul: a\x00b"):
            status, headers, body = _raw(port, f"GET {path} HTTP/1.1\r\nHost: a\r\n".encode()
                                         + head + b"\r\n\r\n")
            assert status.split()[1] in ("400", "431"), (path, head[:10], status)
            assert headers["content-type"] == media_type, (path, head[:10], headers)
            if media_type == "application/problem+json":
                assert json.loads(body)["instance"] == path
                assert headers["cache-control"] == "no-store"
    bad_length = b"Host: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
    status, headers, body = _raw(port, b"POST /scim/v2/Users HTTP/1.1\r\n" + bad_length)
    assert (status, headers["content-type"]) == ("HTTP/1.1 400 Bad Request",
                                                 "application/scim+json")
    assert json.loads(body)["detail"] == "Invalid HTTP Header: 'CONTENT-LENGTH'"
    status, headers, body = _raw(port, b"POST /api/v1/orgs HTTP/1.1\r\n" + bad_length)
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert (problem["status"], problem["instance"]) == (400, "/api/v1/orgs")
    status, headers, body = _raw(port, b"POST /sso/acme/acs HTTP/1.1\r\n" + bad_length)
    assert headers["content-type"] == "text/html"  # a browser's page
    # The OAuth token endpoints (an IdP's, the portal's): OAuth's error JSON (RFC 6749
    # §5.2), which their clients read; it was a SCIM error and gunicorn's HTML page.
    for path in ("/oauth/token", "/sso/oidc/token", "/sso/oidc/userinfo"):
        for request in (f"POST {path} HTTP/1.1\r\n".encode() + bad_length,
                        f"GET {path} HTTP/1.1\r\nHost: a\r\nX-Big: ".encode() + b"y" * 9000
                        + b"\r\n\r\n"):
            status, headers, body = _raw(port, request)
            assert status.split()[1] in ("400", "431"), (path, status)
            assert headers["content-type"] == "application/json", (path, headers)
            error = json.loads(body)
            assert error["error"] == "invalid_request", (path, error)
            assert error["error_description"], (path, error)
            assert headers["cache-control"] == "no-store", (path, headers)


def _serve(database_url: str, port: int, log_path: Path, more_env: dict[str, str] | None = None,
           *, workers: int = 1, **server: str) -> subprocess.Popen[bytes]:
    """``roster serve`` (one worker unless ``workers``) on ``port``, once /readyz answers;
    stderr to the log. ``server``: more [server] settings (``READ_TIMEOUT="1"``);
    ``more_env``: other variables (``ROSTER_LOGGING__FORMAT``, ``GUNICORN_CMD_ARGS``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTER_")}
    env.update({"ROSTER_DATABASE__URL": database_url, "ROSTER_APP__ENV": "test",
                "ROSTER_SERVER__SWITCH_INTERVAL_US": "700",
                **{f"ROSTER_SERVER__{k}": v for k, v in server.items()}, **(more_env or {})})
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from app.cli import main; main()", "serve",
             "--bind", f"127.0.0.1:{port}", "--workers", str(workers)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log_file,
        )
    # Generous: a loaded machine (parallel suites) has taken over 30 s to boot gunicorn. A
    # server that exits fails at once.
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                assert r.status == 200
                return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.terminate()
                raise AssertionError("gunicorn did not come up") from None
            time.sleep(0.2)


def _answer(sock: socket.socket) -> tuple[str, dict[str, str]]:
    """Read one response (with a Content-Length) off a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        body += chunk
    return status, headers


def test_a_refused_large_body_leaves_the_connection_usable(database_url, tenant, tmp_path):
    """A 415 or 413 answered without reading a large body said keep-alive, then gunicorn
    (which drains 64 KiB at most) closed the connection: the IdP's next request failed with
    a network error. The app now reads such a body to its end."""
    port = _free_port()
    proc = _serve(database_url, port, tmp_path / "serve.log")
    try:
        for content_type, size in (("text/plain", 500_000),
                                   ("application/scim+json", 1_100_000)):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(f"POST /scim/v2/Users HTTP/1.1\r\nHost: a\r\n"
                             f"Authorization: Bearer {tenant.token}\r\n"
                             f"Content-Type: {content_type}\r\n"
                             f"Content-Length: {size}\r\n\r\n".encode() + b"x" * size)
                status, headers = _answer(sock)
                assert status.split()[1] in ("413", "415")
                assert headers["connection"] == "keep-alive"
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
                assert _answer(sock)[0] == "HTTP/1.1 200 OK"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_roster_serve_runs_gunicorn_and_answers(database_url, tmp_path):
    """`roster serve` starts gunicorn with app:create_app() and serves /healthz and /readyz.

    The requests gunicorn refuses itself are answered in the protocol's error format (a
    SCIM Error, a problem document under /api/, gunicorn's HTML page under /sso/). Its
    buffered access log reaches stderr by the time the server has stopped, and the
    workers run with the configured GIL switch interval (server.switch_interval_us) and
    the request threads server.threads = 0 picks for the database (1 on SQLite, 4 on
    PostgreSQL).
    """
    port = _free_port()
    log_path = tmp_path / "serve.log"
    proc = _serve(database_url, port, log_path)
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz",
                                         headers={"X-Request-ID": "serve-log-check"})
        # Generous timeouts: a loaded machine (parallel suites) can take seconds to answer.
        with urllib.request.urlopen(request, timeout=20) as r:
            assert json.load(r) == {"status": "ok"}
        # A 7,000-byte request line (a long SCIM filter) reaches the app; gunicorn's own
        # default (4,094) would answer 414 before it.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz?f={'x' * 7000}",
                                    timeout=20) as r:
            assert r.status == 200
        _assert_gunicorn_errors_in_protocol_format(port)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    lines = [json.loads(line) for line in log_path.read_text().splitlines()
             if line.startswith("{")]
    assert any(line.get("request_id") == "serve-log-check" and line.get("route") == "/healthz"
               for line in lines)
    threads = 1 if database_url.startswith("sqlite") else 4
    assert f"{threads} request thread(s), GIL switch interval 700 us" in log_path.read_text()


def test_roster_serve_threads_option_overrides_the_setting(monkeypatch, database_url):
    """`roster serve --threads 3` hands gunicorn three request threads per worker (through
    ROSTER_SERVER__THREADS, which config/gunicorn.conf.py reads); 0 is refused before
    gunicorn starts."""
    from click.testing import CliRunner

    from app.cli import cli
    from app.cli.commands import register

    register()
    started: list[tuple[list[str], str | None]] = []

    def exec_instead(_file: str, argv: list[str]) -> None:
        started.append((argv, os.environ.get("ROSTER_SERVER__THREADS")))

    monkeypatch.setattr(os, "execvp", exec_instead)
    # serve exports its settings into os.environ for gunicorn: keep them out of other tests.
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items()
                                        if not k.startswith("ROSTER_")})
    env = {"ROSTER_DATABASE__URL": database_url}
    result = CliRunner().invoke(cli, ["serve", "--threads", "3"], env=env)
    assert result.exit_code == 0, result.output
    assert started[0][1] == "3"
    assert "gunicorn" in started[0][0]
    refused = CliRunner().invoke(cli, ["serve", "--threads", "0"], env=env)
    assert refused.exit_code == 2
    assert "--threads" in refused.output
    assert len(started) == 1


@pytest.mark.parametrize(
    ("environ", "threads"),
    [
        ({}, 1),  # the default SQLite file
        ({"ROSTER_DATABASE__URL": "postgresql+psycopg://roster@db/roster"}, 4),
        ({"ROSTER_SERVER__THREADS": "3"}, 3),  # as `roster serve` passes it
    ],
)
def test_gunicorn_config_picks_threads_like_roster_serve(monkeypatch, tmp_path, environ,
                                                         threads):
    """config/gunicorn.conf.py, which the Docker image runs gunicorn with directly, gives
    the same request threads per worker as `roster serve`."""
    import runpy

    for key in [k for k in os.environ if k.startswith("ROSTER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    assert runpy.run_path(str(ROOT / "config" / "gunicorn.conf.py"))["threads"] == threads


def test_gunicorn_config_reads_the_server_settings_of_the_config_file(monkeypatch, tmp_path):
    """Run directly (the Docker image), gunicorn takes server.timeout and
    server.switch_interval_us (config/gunicorn.conf.py) and its workers server.read_timeout
    from the ROSTER_CONFIG file, as under `roster serve`: they were read from the environment
    only."""
    import runpy

    for key in [k for k in os.environ if k.startswith("ROSTER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "roster.toml").write_text(
        "[server]\ntimeout = 45\nread_timeout = 7\nswitch_interval_us = 900\n")
    monkeypatch.setenv("ROSTER_CONFIG", str(tmp_path / "roster.toml"))
    config = runpy.run_path(str(ROOT / "config" / "gunicorn.conf.py"))
    assert (config["timeout"], config["switch_interval_us"]) == (45, 900)
    from app.ops.http_worker import read_timeout

    read_timeout.cache_clear()
    try:
        assert read_timeout() == 7
    finally:
        read_timeout.cache_clear()


def test_gunicorn_workers_freeze_the_loaded_app_out_of_the_collector(monkeypatch, tmp_path):
    """After a worker has loaded the app, its objects move to the permanent generation, so
    full garbage collections stop walking them."""
    import gc
    import runpy

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    config = runpy.run_path(str(ROOT / "config" / "gunicorn.conf.py"))
    assert gc.get_freeze_count() == 0
    try:
        config["post_worker_init"](None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_each_functions_sync_kind_is_decided_once(app, client, monkeypatch):
    """RosterFlask.ensure_sync asks Flask once per plain function, then remembers; any
    other callable (here a bound method) is asked about every time."""
    from flask import Flask

    asked = []
    plain_ensure_sync = Flask.ensure_sync

    def counting(self, func):
        asked.append(func)
        return plain_ensure_sync(self, func)

    monkeypatch.setattr(Flask, "ensure_sync", counting)

    def view():
        return "ok"

    assert app.ensure_sync(view) is view
    assert app.ensure_sync(view) is view
    assert asked == [view]
    method = "text".upper
    app.ensure_sync(method)
    app.ensure_sync(method)
    assert asked == [view, method, method]
    # Requests still run every before/after-request function and the view.
    assert client.get("/healthz").status_code == 200
