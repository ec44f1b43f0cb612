"""Throwaway RSA key pairs with self-signed certificates, made per test session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class TestKey:
    """A PEM key, its PEM certificate, and both written to files."""

    key_pem: str
    cert_pem: str
    key_file: Path
    cert_file: Path

    @property
    def cert_b64(self) -> str:
        """The certificate body as metadata and python3-saml settings carry it."""
        lines = self.cert_pem.strip().splitlines()
        return "".join(line for line in lines if "CERTIFICATE" not in line)


def make_key(directory: Path, name: str) -> TestKey:
    """Generate a 2048-bit RSA key and a 1-year self-signed certificate for CN=name."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_file, cert_file = directory / f"{name}.key", directory / f"{name}.crt"
    key_file.write_text(key_pem)
    cert_file.write_text(cert_pem)
    return TestKey(key_pem, cert_pem, key_file, cert_file)
