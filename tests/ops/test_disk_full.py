"""A full disk under the SQLite database: /readyz says so, writes are a retryable 503.

Needs a small filesystem to fill: a tmpfs mounted for the test (root in a container that
allows it); skipped elsewhere."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
from pathlib import Path

import pytest

from app.db import Database
from app.migrate import upgrade
from tests.api.conftest import make_key
from tests.conftest import make_tenant
from tests.ops.test_ops import _free_port, _serve


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 4 MiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4M", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and the mount capability)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass  # ENOSPC: full
    finally:
        os.close(fd)


def _call(port: int, method: str, path: str, headers: dict[str, str],
          body: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={**headers, "Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


def test_a_full_disk_makes_readyz_503_and_writes_a_retryable_503(small_disk, tmp_path):
    """With the database's disk full every write failed ("database or disk is full"), while
    /readyz said ok: its write check changes nothing and allocates nothing. It answers 503
    ``database disk full``; the writes are 503s in the API's and SCIM's formats, never a
    500, that name the full disk (they said "busy", a retry at once); freeing space makes
    the node ready again."""
    url = f"sqlite:///{small_disk / 'roster.db'}"
    upgrade(url)
    database = Database(url)
    try:
        key = make_key(database, "operator")
        tenant = make_tenant(database, "acme")
    finally:
        database.engine.dispose()
    port = _free_port()
    log_path = tmp_path / "serve.log"
    proc = _serve(url, port, log_path)
    filler = small_disk / "filler"
    try:
        assert _call(port, "POST", "/api/v1/orgs", key.headers,
                     {"slug": "before", "name": "Before"})[0] == 201
        _fill(filler)
        status, ready = _call(port, "GET", "/readyz", {})
        assert (status, ready["reason"]) == (503, "database disk full")
        for n in range(3):
            status, problem = _call(port, "POST", "/api/v1/orgs", key.headers,
                                    {"slug": f"full{n}", "name": "x" * 150})
            assert status == 503, problem
            assert problem["status"] == 503
            assert "disk is full" in problem["detail"]
        status, error = _call(port, "POST", "/scim/v2/Users", tenant.headers, {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a@x.io"})
        assert (status, error["status"]) == (503, "503"), error
        assert "disk is full" in error["detail"]
        filler.unlink()
        assert _call(port, "GET", "/readyz", {})[0] == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=60) == 0
    assert "Traceback" not in log_path.read_text()
