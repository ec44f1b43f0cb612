"""IdP metadata from an https URL: import, refresh after the IdP rotates, http refused."""

from __future__ import annotations

import ipaddress
import ssl
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.errors import InvalidInput
from app.models import Organization
from app.models.sso import SsoConnection
from app.sso.connections import create_connection, refresh_metadata
from tests.conftest import OPERATOR
from tests.sso import forge


@pytest.fixture
def https_metadata(tmp_path):
    """An https server on 127.0.0.1 with its own certificate; yields (url, body, context)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    body = {"xml": ""}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = body["xml"].encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/samlmetadata+xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
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


def test_metadata_url_import_and_refresh_follow_the_idp_rotation(db, tenant, keys,
                                                                  https_metadata):
    """The first fetch trusts one cert; after the IdP adds a second, refresh trusts both."""
    url, body, context = https_metadata
    body["xml"] = forge.idp_metadata([keys.idp.cert_b64])
    with db.transaction() as s:
        conn = create_connection(s, s.get(Organization, tenant.org.id), "by-url", "saml",
                                 OPERATOR)
        conn.metadata_url = url
        refresh_metadata(s, conn, OPERATOR, context=context)
        assert conn.idp_certs == [keys.idp.cert_b64]
    body["xml"] = forge.idp_metadata([keys.idp.cert_b64, keys.idp_second.cert_b64])
    with db.transaction() as s:
        conn = s.get(SsoConnection, conn.id)
        refresh_metadata(s, conn, OPERATOR, context=context)
        assert conn.idp_certs == [keys.idp.cert_b64, keys.idp_second.cert_b64]
        assert conn.metadata_refreshed_at is not None


def test_metadata_must_come_over_verified_https(db, tenant, keys, https_metadata):
    """http is refused outright; an https server whose certificate we do not trust fails."""
    url, body, _context = https_metadata
    body["xml"] = forge.idp_metadata([keys.idp.cert_b64])
    with db.transaction() as s:
        conn = create_connection(s, s.get(Organization, tenant.org.id), "by-url", "saml",
                                 OPERATOR)
        conn.metadata_url = url.replace("https://", "http://")
        with pytest.raises(InvalidInput, match="must be https"):
            refresh_metadata(s, conn, OPERATOR)
        conn.metadata_url = url
        with pytest.raises(InvalidInput, match="cannot fetch"):
            refresh_metadata(s, conn, OPERATOR)
