"""IdP metadata from an https URL: import, refresh after the IdP rotates, http refused."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from app.db import utcnow
from app.errors import Conflict, InvalidInput
from app.models import Organization
from app.models.sso import SsoConnection
from app.sso.connection_metadata import fetch_metadata, refresh_metadata
from app.sso.connections import create_connection
from tests.conftest import OPERATOR, rows
from tests.sso import forge
from tests.sso.lockprobe import can_write
from tests.tls_certs import self_signed

ROSTER = str(Path(sys.executable).parent / "roster")


@pytest.fixture
def https_metadata(tmp_path):
    """An https server on 127.0.0.1 with its own certificate; yields (url, body, context)."""
    cert_file, key_file = self_signed(tmp_path, ["127.0.0.1"])
    # "xml": the document served; "on_get": called while a request waits for the answer;
    # "redirect": where a GET of /metadata is sent instead (302).
    body: dict[str, Any] = {"xml": ""}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if body.get("on_get"):
                body["on_get"]()
            if body.get("redirect") and self.path == "/metadata":
                self.send_response(302)
                self.send_header("Location", body["redirect"])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = body["xml"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/samlmetadata+xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body.get("trickle"):  # a byte at a time, each well within a read's timeout
                for i in range(len(data)):
                    if body.get("stop"):
                        return
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()
                    time.sleep(body["trickle"])
                return
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = ssl.create_default_context(cafile=str(cert_file))
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/metadata", body, client
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _connection_with_url(db, tenant, url: str) -> str:
    with db.transaction() as s:
        conn = create_connection(s, s.get(Organization, tenant.org.id), "by-url", "saml",
                                 OPERATOR)
        conn.metadata_url = url
        return conn.id


def test_metadata_url_import_and_refresh_follow_the_idp_rotation(db, tenant, keys,
                                                                  https_metadata):
    """The first fetch trusts one cert; after the IdP adds a second, refresh trusts both."""
    url, body, context = https_metadata
    body["xml"] = forge.idp_metadata([keys.idp.cert_b64])
    cid = _connection_with_url(db, tenant, url)
    assert refresh_metadata(db, cid, OPERATOR, private_ok=True, context=context).idp_certs == \
        [keys.idp.cert_b64]
    body["xml"] = forge.idp_metadata([keys.idp.cert_b64, keys.idp_second.cert_b64])
    refresh_metadata(db, cid, OPERATOR, private_ok=True, context=context)
    with db.transaction(readonly=True) as s:
        conn = s.get(SsoConnection, cid)
        assert conn.idp_certs == [keys.idp.cert_b64, keys.idp_second.cert_b64]
        assert conn.metadata_refreshed_at is not None


def test_refresh_holds_no_write_lock_while_the_idp_answers(db, tenant, keys, https_metadata):
    """While the metadata server is answering, another connection can still write."""
    url, body, context = https_metadata
    body["xml"] = forge.idp_metadata([keys.idp.cert_b64])
    cid = _connection_with_url(db, tenant, url)
    seen: list[bool] = []
    body["on_get"] = lambda: seen.append(
        can_write(db, "UPDATE sso_connections SET updated_at = updated_at"))
    refresh_metadata(db, cid, OPERATOR, private_ok=True, context=context)
    assert seen == [True]


def test_the_lock_probe_sees_an_open_write_transaction(db, tenant):
    """Control for the test above: with a write transaction open, the probe is refused."""
    cid = _connection_with_url(db, tenant, "https://idp.example/metadata")
    probe = "UPDATE sso_connections SET updated_at = updated_at"
    with db.transaction() as s:
        s.get(SsoConnection, cid, with_for_update=True).updated_at = utcnow()
        s.flush()
        assert can_write(db, probe) is False
    assert can_write(db, probe) is True


def test_a_url_changed_during_the_fetch_is_not_applied(db, tenant, keys, https_metadata):
    """The fetched document belongs to the old URL: 409, the connection keeps its state."""
    url, body, context = https_metadata
    body["xml"] = forge.idp_metadata([keys.idp.cert_b64])
    cid = _connection_with_url(db, tenant, url)

    def repoint() -> None:
        with db.transaction() as s:
            s.get(SsoConnection, cid).metadata_url = "https://elsewhere.example/metadata"
    body["on_get"] = repoint
    with pytest.raises(Conflict, match="changed during the refresh"):
        refresh_metadata(db, cid, OPERATOR, private_ok=True, context=context)
    with db.transaction(readonly=True) as s:
        assert s.get(SsoConnection, cid).idp_certs == []


def test_metadata_must_come_over_verified_https(db, tenant, keys, https_metadata):
    """http is refused outright; an https server whose certificate we do not trust fails."""
    url, body, _context = https_metadata
    body["xml"] = forge.idp_metadata([keys.idp.cert_b64])
    cid = _connection_with_url(db, tenant, url.replace("https://", "http://"))
    with pytest.raises(InvalidInput, match="must be https"):
        refresh_metadata(db, cid, OPERATOR, private_ok=True)
    with db.transaction() as s:
        s.get(SsoConnection, cid).metadata_url = url
    with pytest.raises(InvalidInput, match="cannot fetch"):
        refresh_metadata(db, cid, OPERATOR, private_ok=True)


def test_cli_refreshes_one_connection_or_all_of_them(database_url, db, tenant, keys,
                                                     https_metadata, tmp_path):
    """`roster connection metadata refresh ID` and `--all` (for cron); failures are listed."""
    from click.testing import CliRunner

    from app.cli import cli
    from app.cli.commands import register

    register()
    url, body, _context = https_metadata
    body["xml"] = forge.idp_metadata([keys.idp.cert_b64, keys.idp_second.cert_b64])
    cid = _connection_with_url(db, tenant, url)
    with db.transaction() as s:
        broken = create_connection(s, s.get(Organization, tenant.org.id), "gone", "saml",
                                   OPERATOR)
        broken.metadata_url = "https://127.0.0.1:9/metadata"
    env = {"ROSTER_DATABASE__URL": database_url, "SSL_CERT_FILE": str(tmp_path / "tls.crt")}

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["connection", "metadata", "refresh", *args], env=env,
                                    catch_exceptions=False)
        assert "Traceback" not in result.output
        return result.exit_code, result.output

    assert run(cid) == (0, f"refreshed {forge.IDP_ENTITY}: 2 certificate(s)\n")
    code, out = run("--all")
    assert code == 1
    assert f"refreshed {forge.IDP_ENTITY}: 2 certificate(s)" in out
    assert f"{broken.id}: not refreshed: cannot fetch" in out
    assert "1 of 2 connection(s) not refreshed" in out
    assert run()[0] == 2
    assert run(broken.id)[0] == 1


def test_the_worker_refreshes_metadata_older_than_the_setting(database_url, db, tenant, keys,
                                                               https_metadata, tmp_path):
    """`roster worker` re-reads stale URL-backed metadata (the IdP's new certificate is
    trusted), leaves fresh metadata alone, and reports a failing URL without stopping."""
    from tests.lifecycle.support import roster

    url, body, _context = https_metadata
    body["xml"] = forge.idp_metadata([keys.idp.cert_b64, keys.idp_second.cert_b64])
    stale = _connection_with_url(db, tenant, url)
    with db.transaction() as s:
        org = s.get(Organization, tenant.org.id)
        fresh = create_connection(s, org, "fresh", "saml", OPERATOR)
        fresh.metadata_url, fresh.metadata_refreshed_at = url, utcnow()
        broken = create_connection(s, org, "gone", "saml", OPERATOR)
        broken.metadata_url = "https://127.0.0.1:9/metadata"
    result = roster(database_url, "worker", "--until-idle", "--worker-id", "w1",
                    SSL_CERT_FILE=str(tmp_path / "tls.crt"))
    assert f"refreshed metadata of connection {stale}" in result.output
    assert f"metadata of connection {broken.id} not refreshed: cannot fetch" in result.output
    assert fresh.id not in result.output
    with db.transaction() as s:
        assert len(s.get(SsoConnection, stale).idp_certs) == 2
        assert s.get(SsoConnection, fresh.id).idp_certs == []
    off = roster(database_url, "worker", "--until-idle", ROSTER_SSO__METADATA_REFRESH_HOURS="0",
                 SSL_CERT_FILE=str(tmp_path / "tls.crt"))
    assert "metadata" not in off.output


def test_two_workers_refresh_due_metadata_once(database_url, db, tenant, keys, https_metadata,
                                               tmp_path):
    """A second `roster worker` (another node) looks while the first is fetching a due
    connection's metadata: it leaves the connection alone. One fetch, one write, one
    ``sso:connection:metadata`` audit event (before, each worker fetched and wrote it)."""
    from tests.lifecycle.support import roster

    url, body, _context = https_metadata
    body["xml"] = forge.idp_metadata([keys.idp.cert_b64, keys.idp_second.cert_b64])
    stale = _connection_with_url(db, tenant, url)
    certs = str(tmp_path / "tls.crt")
    gets: list[str] = []
    arrived, release = threading.Event(), threading.Event()

    def hold_the_first() -> None:
        gets.append("GET")
        if len(gets) == 1:  # the first worker's fetch waits (its timeout is 10 s)
            arrived.set()
            release.wait(8)
    body["on_get"] = hold_the_first
    first = subprocess.Popen(
        [ROSTER, "worker", "--until-idle", "--worker-id", "w1"], text=True,
        env={**os.environ, "ROSTER_DATABASE__URL": database_url, "ROSTER_APP__ENV": "test",
             "SSL_CERT_FILE": certs}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert arrived.wait(60), "the first worker never fetched"
        second = roster(database_url, "worker", "--until-idle", "--worker-id", "w2",
                        SSL_CERT_FILE=certs)
    finally:
        release.set()
        _out, said = first.communicate(timeout=120)
    assert first.returncode == 0, said
    assert f"refreshed metadata of connection {stale}" in said
    assert stale not in second.output
    assert gets == ["GET"]
    assert rows(db, "SELECT count(*) FROM audit_events WHERE action = 'sso:connection:metadata' "
                    "AND subject_id = :c", c=stale)[0][0] == 1
    with db.transaction() as s:
        conn = s.get(SsoConnection, stale)
        assert len(conn.idp_certs) == 2
        assert conn.metadata_claimed_until is None


def test_a_metadata_url_that_trickles_is_cut_at_the_timeout(https_metadata):
    """A server sending the document a byte every 0.05 s (each read well within the
    timeout) held the download for as long as the document lasted: urllib's timeout bounds
    each read, not the download. The whole download now ends within the timeout."""
    url, body, context = https_metadata
    body["xml"], body["trickle"] = forge.idp_metadata(["MIIB" + "A" * 400]), 0.05
    started = time.monotonic()
    try:
        with pytest.raises(InvalidInput) as refused:
            fetch_metadata(url, private_ok=True, timeout=1.0, context=context)
    finally:
        body["stop"] = True
    assert time.monotonic() - started < 3
    assert refused.value.detail == (f"cannot fetch metadata from {url}: no complete answer "
                                    "within 1 s")
