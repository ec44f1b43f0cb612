"""Roster under the real gunicorn with several workers: metrics summed over workers and
worker restarts, bounded labels, shutdown that loses nothing."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.settings import ROOT
from tests.conftest import rows
from tests.ops.test_ops import _free_port, _serve


def _request(port: int, method: str, path: str,
             headers: dict[str, str] | None = None) -> int:
    """One request on a connection of its own (so gunicorn may hand it to any worker)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _request_counts(port: int) -> dict[tuple[str, str, str], float]:
    """``roster_http_requests_total`` from /metrics, by (method, route, status)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    return {(s.labels["method"], s.labels["route"], s.labels["status"]): s.value
            for family in text_string_to_metric_families(text)
            if family.name == "roster_http_requests"
            for s in family.samples if s.name == "roster_http_requests_total"}


def test_metrics_sum_two_workers_across_restarts_with_the_method_label_bounded(
        database_url, tmp_path):
    """Two workers restarted every few requests (max_requests): /metrics counts every
    request once, dead workers' included. A method a client makes up (gunicorn passes any
    upper-case token) was a label value of its own, a new counter and histogram series per
    name, without bound; it is counted as ``other``."""
    port = _free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    proc = _serve(database_url, port, tmp_path / "serve.log",
                  {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                   "GUNICORN_CMD_ARGS": "--max-requests 4 --max-requests-jitter 0"},
                  workers=2)
    try:
        before = _request_counts(port).get(("GET", "/healthz", "200"), 0.0)
        for _ in range(20):
            assert _request(port, "GET", "/healthz") == 200
        invented = [f"X{a}{b}Q" for a in "ABC" for b in "DEF"]
        for method in invented:
            assert _request(port, method, "/healthz") == 405
        counts = _request_counts(port)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert counts[("GET", "/healthz", "200")] == before + 20
    assert counts[("other", "/healthz", "405")] == len(invented)
    assert not {method for method, _, _ in counts} & set(invented)
    # max_requests replaced the workers several times: their counts outlived them.
    assert len(list(metrics_dir.glob("counter_*.db"))) > 2


def test_sigterm_right_after_scim_requests_loses_no_record_or_log_line(
        database_url, db, tenant, tmp_path):
    """SIGTERM to gunicorn right after SCIM requests: every request is in the flight
    recorder and has its access line (both are buffered in the worker), and the shutdown
    writes no traceback."""
    port = _free_port()
    log_path = tmp_path / "serve.log"
    proc = _serve(database_url, port, log_path, workers=2)
    ids = [f"sigterm-{n}" for n in range(8)]
    try:
        for request_id in ids:
            assert _request(port, "GET", "/scim/v2/Users?count=1",
                            {**tenant.headers, "X-Request-ID": request_id}) == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    recorded = {row.request_id for row in rows(
        db, "SELECT request_id FROM scim_requests WHERE directory_id = :d",
        d=tenant.directory.id)}
    assert recorded >= set(ids)
    text = log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert {line["request_id"] for line in lines if line.get("logger") == "roster.access"
            } >= set(ids)
    assert "Traceback" not in text
    assert all(line["level"] in ("INFO", "DEBUG") for line in lines), \
        [line for line in lines if line["level"] not in ("INFO", "DEBUG")]


def _wait_for(log_path, text: str, proc) -> None:
    """Until the server's log holds ``text`` (at most 60 s; the server must keep running)."""
    deadline = time.monotonic() + 60
    while text not in log_path.read_text():
        assert proc.poll() is None, "the server stopped"
        assert time.monotonic() < deadline, f"{text!r} never logged"
        time.sleep(0.1)


def test_sighup_with_settings_that_do_not_validate_is_refused_and_the_workers_serve_on(
        database_url, tmp_path):
    """gunicorn runs its config file again on SIGHUP, which reads Roster's settings: a config
    file edited into one that does not validate exited the master there (SystemExit) and
    its workers followed, the whole server down. The reload is refused with the problem
    logged, the workers serve on, and a SIGHUP once the file is fixed reloads."""
    config = tmp_path / "roster.toml"
    config.write_text('[ratelimit]\napi = "600/minute"\n')
    log_path = tmp_path / "serve.log"
    port = _free_port()
    proc = _serve(database_url, port, log_path, {"ROSTER_CONFIG": str(config)}, workers=2)
    try:
        config.write_text('[ratelimit]\napi = "abc"\n')
        proc.send_signal(signal.SIGHUP)  # roster serve exec'd gunicorn: this is its master
        _wait_for(log_path, "reload refused", proc)
        assert _request(port, "GET", "/healthz") == 200
        config.write_text('[ratelimit]\napi = "300/minute"\n')
        proc.send_signal(signal.SIGHUP)
        _wait_for(log_path, "Hang up: Master", proc)
        assert _request(port, "GET", "/healthz") == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    lines = [json.loads(line) for line in log_path.read_text().splitlines()
             if line.startswith("{")]
    assert any(line["msg"] == "roster: configuration error: ratelimit.api must look like "
               "'600/minute' (at least one request), got 'abc'" for line in lines)
    assert "Traceback" not in log_path.read_text()


def test_gunicorns_debug_dump_of_its_configuration_masks_the_secrets_given_with_e(
        database_url, tmp_path):
    """At logging.level DEBUG gunicorn logs its whole configuration, ``raw_env`` (the
    variables given with ``-e``) included: ROSTER_APP__SECRET_KEY's and
    ..._PREVIOUS_SECRET_KEY's values were written as they are (the masks knew ``secret=``
    but not ``secret_key=``)."""
    current, previous = "k" * 20 + "CurrentKey0042", "p" * 20 + "PreviousKey0042"
    log_path = tmp_path / "serve.log"
    port = _free_port()
    proc = _serve(database_url, port, log_path, {
        "ROSTER_LOGGING__LEVEL": "DEBUG",
        "GUNICORN_CMD_ARGS": f"-e ROSTER_APP__SECRET_KEY={current} "
                             f"-e ROSTER_APP__PREVIOUS_SECRET_KEY={previous}"})
    try:
        assert _request(port, "GET", "/healthz") == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    text = log_path.read_text()
    assert "raw_env" in text
    assert "ROSTER_APP__SECRET_KEY=[REDACTED]" in text
    assert current not in text
    assert previous not in text


def test_with_preload_the_workers_write_their_log_lines_as_they_go(
        database_url, tenant, tmp_path):
    """gunicorn's ``--preload`` builds the app, and its buffered log handler, in the master;
    the workers forked without its flushing thread, so their access lines stayed in memory
    (growing) until the worker exited. Each line is now written while the server runs, once."""
    log_path = tmp_path / "serve.log"
    port = _free_port()
    proc = _serve(database_url, port, log_path, {"GUNICORN_CMD_ARGS": "--preload"}, workers=2)
    ids = [f"preload-{n}" for n in range(4)]
    try:
        for request_id in ids:
            assert _request(port, "GET", "/scim/v2/Users?count=1",
                            {**tenant.headers, "X-Request-ID": request_id}) == 200
        for request_id in ids:
            _wait_for(log_path, f'"request_id":"{request_id}"', proc)
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    lines = [json.loads(line) for line in log_path.read_text().splitlines()
             if line.startswith("{")]
    access = [line["request_id"] for line in lines if line.get("logger") == "roster.access"]
    assert sorted(r for r in access if r in ids) == ids


def _gunicorn_direct(database_url: str, port: int, log_path, **env: str):
    """gunicorn run as the Docker image runs it (its config file, no --workers), once
    /readyz answers."""
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("ROSTER_") and k != "WEB_CONCURRENCY"}
    environ.update({"ROSTER_DATABASE__URL": database_url, "ROSTER_APP__ENV": "test", **env})
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "config/gunicorn.conf.py",
             "--bind", f"127.0.0.1:{port}", "app:create_app()"],
            cwd=ROOT, env=environ, stdout=subprocess.DEVNULL, stderr=log_file)
    deadline = time.monotonic() + 90
    while True:
        try:
            if _request(port, "GET", "/readyz") == 200:
                return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.terminate()
            raise AssertionError("gunicorn did not come up")
        time.sleep(0.2)


@pytest.mark.parametrize(("env", "workers"), [
    ({"ROSTER_SERVER__WORKERS": "3"}, 3),
    ({"ROSTER_SERVER__WORKERS": "3", "WEB_CONCURRENCY": "1"}, 1),
])
def test_gunicorn_run_directly_starts_server_workers(database_url, tmp_path, env, workers):
    """The Docker image runs gunicorn with config/gunicorn.conf.py and no --workers:
    server.workers (ROSTER_SERVER__WORKERS) was ignored and it ran gunicorn's default, one
    worker. It starts server.workers; gunicorn's WEB_CONCURRENCY, set, still decides."""
    log_path = tmp_path / "serve.log"
    port = _free_port()
    proc = _gunicorn_direct(database_url, port, log_path, **env)
    try:
        _wait_for(log_path, "GIL switch interval", proc)
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    booted = [json.loads(line)["msg"] for line in log_path.read_text().splitlines()
              if line.startswith("{") and "Booting worker" in line]
    assert len(booted) == workers
