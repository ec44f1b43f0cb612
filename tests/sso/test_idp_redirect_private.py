"""An IdP on a public address that redirects (301, 302, 307, 308) to loopback, a private
network or the cloud metadata service is refused with ``sso.idp_private_addresses`` off, the
private address never asked (OWASP server-side request forgery through a redirect).

A server on loopback cannot be reached at a public address without changing the machine's
network, so the public IdP stands behind an egress proxy (``https_proxy``), as a deployment's
may: a real CONNECT proxy on 127.0.0.1 tunnels ``93.184.216.34:443`` to a TLS server on
loopback whose certificate names that address (trusted through ``SSL_CERT_FILE`` and
``REQUESTS_CA_BUNDLE``, the standard libraries' own settings). Every hop of Roster's fetch
goes through the proxy; each tunnel's target is checked by Roster before it asks for it
(app/public_address.py), so the redirect's private target must never reach the proxy.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import StreamRequestHandler, ThreadingTCPServer
from typing import Any

import pytest

from app.sso.idp_fetch import NOT_PUBLIC
from tests.api.test_frame import assert_problem
from tests.conftest import rows
from tests.sso.test_idp_private_addresses import (  # noqa: F401  (fixtures)
    admin,
    public_only_app,
    strict,
)
from tests.tls_certs import self_signed

PUBLIC = "93.184.216.34"  # a global unicast address; only the test proxy "reaches" it
PRIVATE_TARGETS = ["https://127.0.0.1:{port}/inside", "https://10.0.0.1/inside",
                   "https://169.254.169.254/latest/meta-data/", "https://[::1]:{port}/inside",
                   "https://100.64.0.1/inside"]


def _certificate(tmp_path) -> tuple[str, str]:
    cert_file, key_file = self_signed(tmp_path, [PUBLIC, "127.0.0.1"], stem="idp")
    return str(cert_file), str(key_file)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    with a, b:
        while True:
            ready, _, _ = select.select([a, b], [], [], 10)
            if not ready:
                return
            for sock in ready:
                data = sock.recv(65536)
                if not data:
                    return
                (b if sock is a else a).sendall(data)


@pytest.fixture
def behind_proxy(tmp_path, monkeypatch) -> Iterator[dict[str, Any]]:
    """The public IdP (a redirecting TLS server) behind a CONNECT proxy, both on loopback;
    yields its state: ``status`` and ``location`` of the redirect, ``connects`` (every
    CONNECT target the proxy was asked for) and ``paths`` (what the IdP was asked)."""
    cert_file, key_file = _certificate(tmp_path)
    state: dict[str, Any] = {"status": 302, "location": "", "connects": [], "paths": []}

    class Idp(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state["paths"].append(self.path)
            self.send_response(state["status"])
            self.send_header("Location", state["location"])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    idp = ThreadingHTTPServer(("127.0.0.1", 0), Idp)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    idp.socket = tls.wrap_socket(idp.socket, server_side=True)

    class Proxy(StreamRequestHandler):
        def handle(self) -> None:
            request = self.rfile.readline().decode("latin-1").split()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            target = request[1] if len(request) > 1 and request[0] == "CONNECT" else "?"
            state["connects"].append(target)
            if target != f"{PUBLIC}:443":  # the test's internet has one host
                self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            upstream = socket.create_connection(idp.server_address)
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            _pipe(self.connection.dup(), upstream)

    proxy = ThreadingTCPServer(("127.0.0.1", 0), Proxy)
    proxy.daemon_threads = True
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (idp, proxy)]
    for thread in threads:
        thread.start()
    proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}"
    for name in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, proxy_url)
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", cert_file)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert_file)
    state["port"] = idp.server_address[1]
    try:
        yield state
    finally:
        for server in (proxy, idp):
            server.shutdown()
            server.server_close()
        for thread in threads:
            thread.join(timeout=5)


def _base(tenant) -> str:
    return f"/api/v1/orgs/{tenant.org.id}/connections"


def test_the_public_idp_is_reached_through_the_proxy(db, tenant, strict, admin,  # noqa: F811
                                                      behind_proxy):
    """Control: the IdP behind the proxy is reached at its public address (its redirect to
    a public https URL followed, through the proxy too), so the refusals below are the
    redirect's, not the setup's."""
    behind_proxy["location"] = f"https://{PUBLIC}/elsewhere"
    resp = strict.post(_base(tenant), headers=admin.headers, json={
        "name": "control", "protocol": "saml", "metadata_url": f"https://{PUBLIC}/metadata"})
    assert resp.status_code == 400, resp.text  # the redirect loops, but it was followed
    assert behind_proxy["paths"][:2] == ["/metadata", "/elsewhere"]
    assert set(behind_proxy["connects"]) == {f"{PUBLIC}:443"}


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("target", PRIVATE_TARGETS)
def test_a_metadata_url_redirecting_to_a_private_address_is_refused(
        db, tenant, strict, admin, behind_proxy, status, target):  # noqa: F811
    """SAML ``metadata_url`` on a public address that answers with a redirect to a private
    one: 400 saying the address is not public, the private address never asked for (no
    CONNECT to it reached the proxy), no connection stored."""
    behind_proxy["status"] = status
    behind_proxy["location"] = target.format(port=behind_proxy["port"])
    resp = strict.post(_base(tenant), headers=admin.headers, json={
        "name": "redirected", "protocol": "saml", "metadata_url": f"https://{PUBLIC}/metadata"})
    problem = assert_problem(resp, 400, "validation")
    assert NOT_PUBLIC in problem["detail"], problem
    assert behind_proxy["paths"] == ["/metadata"]
    assert behind_proxy["connects"] == [f"{PUBLIC}:443"]
    assert rows(db, "SELECT count(*) AS n FROM sso_connections")[0].n == 0


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("target", PRIVATE_TARGETS)
def test_a_discovery_url_redirecting_to_a_private_address_is_refused(
        db, tenant, strict, admin, behind_proxy, status, target):  # noqa: F811
    """OIDC ``discovery_url`` on a public address redirecting to a private one: the same
    400, the private address never asked for, nothing stored."""
    behind_proxy["status"] = status
    behind_proxy["location"] = target.format(port=behind_proxy["port"])
    resp = strict.post(_base(tenant), headers=admin.headers, json={
        "name": "redirected", "protocol": "oidc",
        "discovery_url": f"https://{PUBLIC}/.well-known/openid-configuration"})
    problem = assert_problem(resp, 400, "validation")
    assert NOT_PUBLIC in problem["detail"], problem
    assert behind_proxy["paths"] == ["/.well-known/openid-configuration"]
    assert behind_proxy["connects"] == [f"{PUBLIC}:443"]
    assert rows(db, "SELECT count(*) AS n FROM sso_connections")[0].n == 0
