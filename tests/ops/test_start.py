"""A configuration the app cannot run with stops the server at start, with the problem in one
line, instead of gunicorn rebooting failing workers forever with its port open."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.settings import ROOT
from tests.ops.test_ops import _free_port

BAD = {"ROSTER_RATELIMIT__API": "abc"}
PROBLEM = "roster: configuration error: ratelimit.api must look like '600/minute'"


def _run(argv: list[str], database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` from the checkout with only ``env`` of Roster's settings; at most 60 s."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ROSTER_")}
    environ.update({"ROSTER_DATABASE__URL": database_url, "ROSTER_APP__ENV": "test", **env})
    return subprocess.run(argv, cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize("env", [
    BAD,
    {"ROSTER_RATELIMIT__STORAGE": "redis"},
    {"ROSTER_SSO__SP_KEY_FILE": "/nonexistent", "ROSTER_SSO__SP_CERT_FILE": "/nonexistent"},
    {"ROSTER_OIDC_PROVIDER__SIGNING_KEY_FILE": "/nonexistent"},
])
def test_roster_serve_refuses_settings_the_app_would_fail_on(database_url, env):
    """`roster serve` exits 1 with a line per problem before gunicorn starts: the rate
    limits and key files were read only when a worker built the app or a request needed a
    key."""
    port = _free_port()
    proc = _run([sys.executable, "-c", "from app.cli import main; main()", "serve",
                 "--bind", f"127.0.0.1:{port}", "--workers", "1"], database_url, **env)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines
    assert all(line.startswith("roster: configuration error: ") for line in lines)
    assert "gunicorn" not in proc.stderr.lower()


def test_gunicorn_with_rosters_config_refuses_to_start(database_url):
    """The Docker image runs gunicorn with config/gunicorn.conf.py: its master reads the
    settings and stops with the problem before it binds a port or forks a worker."""
    port = _free_port()
    proc = _run([sys.executable, "-m", "gunicorn", "--config", "config/gunicorn.conf.py",
                 "--bind", f"127.0.0.1:{port}", "app:create_app()"], database_url, **BAD)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"{PROBLEM} (at least one request), got 'abc'"]


def test_a_worker_that_meets_a_configuration_error_halts_the_master(database_url):
    """A worker whose app cannot be built for its configuration (here: gunicorn started
    without Roster's config file, so only the worker reads the settings) exits with
    gunicorn's WORKER_BOOT_ERROR and the master halts with it: the worker's SettingsError
    used to exit 1, and the master booted the next one, forever."""
    port = _free_port()
    proc = _run([sys.executable, "-m", "gunicorn", "--worker-class",
                 "app.ops.http_worker.RosterWorker", "--workers", "1",
                 "--bind", f"127.0.0.1:{port}", "app:create_app()"], database_url, **BAD)
    assert proc.returncode == 3, proc.stderr
    assert PROBLEM in proc.stderr
    assert "Worker failed to boot." in proc.stderr
    assert proc.stderr.count("Booting worker") == 1


@pytest.mark.parametrize("where", ["missing", "a-file"])
def test_a_metrics_directory_that_cannot_be_written_stops_the_server_at_start(
        database_url, tmp_path, where):
    """PROMETHEUS_MULTIPROC_DIR naming no writable directory made every request a 500
    (/healthz too: prometheus_client writes each worker's samples there per request); the
    server now refuses to start, with one line naming the variable."""
    metrics_dir = tmp_path / where
    if where == "a-file":
        metrics_dir.write_text("")
    port = _free_port()
    proc = _run([sys.executable, "-c", "from app.cli import main; main()", "serve",
                 "--bind", f"127.0.0.1:{port}", "--workers", "1"], database_url,
                PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "roster: configuration error: PROMETHEUS_MULTIPROC_DIR must name a writable "
        f"directory (the workers' metrics are kept there), got {str(metrics_dir)!r}"]


def test_the_metrics_directory_gunicorn_made_is_made_again_on_reload(monkeypatch, tmp_path):
    """On SIGHUP the master runs config/gunicorn.conf.py again: the temporary directory it
    made at start, if a /tmp cleaner took it meanwhile, is made again (the check above would
    have stopped the master)."""
    import runpy

    made = tmp_path / "roster-metrics-x"
    for key in [k for k in os.environ if k.startswith("ROSTER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(made))
    monkeypatch.setenv("ROSTER_METRICS_TMPDIR", str(made))
    runpy.run_path(str(ROOT / "config" / "gunicorn.conf.py"))
    assert made.is_dir()
