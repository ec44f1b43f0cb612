"""The temporary directory gunicorn's master makes for the workers' Prometheus samples is
removed when the master exits, not while a master SIGUSR2 started still uses it, and never
one the operator named."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from tests.ops.test_ops import _free_port, _serve


def _made(tmpdir: Path) -> list[Path]:
    return sorted(tmpdir.glob("roster-metrics-*"))


def _until(condition, what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.1)


def _get(port: int, path: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return response.status


def test_the_temporary_metrics_directory_is_removed_when_the_server_stops(
        database_url, tmp_path):
    """Each start without PROMETHEUS_MULTIPROC_DIR made a roster-metrics-* directory (a
    sample file per worker) that stayed behind after the server stopped."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    port = _free_port()
    proc = _serve(database_url, port, tmp_path / "serve.log", {"TMPDIR": str(tmpdir)})
    try:
        assert _get(port, "/metrics") == 200
        [made] = _made(tmpdir)
        assert list(made.glob("*.db"))
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    assert _made(tmpdir) == []


def test_a_metrics_directory_the_operator_named_is_kept(database_url, tmp_path):
    """The directory is the operator's: kept, with its samples."""
    named = tmp_path / "metrics"
    named.mkdir()
    port = _free_port()
    proc = _serve(database_url, port, tmp_path / "serve.log",
                  {"PROMETHEUS_MULTIPROC_DIR": str(named)})
    try:
        assert _get(port, "/metrics") == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    assert list(named.glob("*.db"))


@pytest.mark.parametrize("reloaded", [False, True])
def test_sigusr2_the_old_master_keeps_the_directory_the_new_one_was_given(
        database_url, tmp_path, reloaded):
    """SIGUSR2 re-executes gunicorn: the new master gets gunicorn's environment from its
    start, which holds the directory once a SIGHUP ran the config file again. The old
    master, stopped once the new one serves, removes its directory only when the new master
    was not given it; the new master removes what is left when it stops."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    pidfile = tmp_path / "gunicorn.pid"
    log_path = tmp_path / "serve.log"
    port = _free_port()
    proc = _serve(database_url, port, log_path,
                  {"TMPDIR": str(tmpdir), "GUNICORN_CMD_ARGS": f"--pid {pidfile}"})
    new_pid = None
    try:
        [made] = _made(tmpdir)
        if reloaded:
            proc.send_signal(signal.SIGHUP)
            _until(lambda: "Hang up: Master" in log_path.read_text(), "reloaded")
        proc.send_signal(signal.SIGUSR2)
        second = Path(f"{pidfile}.2")
        _until(lambda: second.exists() and second.read_text().strip(), "a new master")
        new_pid = int(second.read_text())
        _until(lambda: f"({new_pid})" in log_path.read_text()
               and log_path.read_text().count("GIL switch interval") >= 2 + reloaded,
               "the new master's worker")
        proc.terminate()  # the old master, once the new one serves
        assert proc.wait(timeout=60) == 0
        assert made.is_dir() == reloaded
        assert len(_made(tmpdir)) == 1
        assert _get(port, "/healthz") == 200
        assert _get(port, "/metrics") == 200
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
        if new_pid is not None:
            os.kill(new_pid, signal.SIGTERM)
    _until(lambda: _made(tmpdir) == [], "the new master removed its directory")
