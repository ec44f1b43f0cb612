"""Secrets Roster stores and must read back, sealed with Fernet (AES-128-CBC + HMAC-SHA256).

Each purpose has its own key, derived from ``app.secret_key`` by HKDF-SHA256 (RFC 5869)
with the purpose as ``info``: the OIDC client secrets of connections, the PKCE verifiers of
login attempts in flight, the upstream ID tokens kept for a logout at the IdP. After a
rotation ``app.previous_secret_key`` still opens what the old key sealed (MultiFernet), and
``roster connection rekey`` seals it all again with the new key.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.errors import InvalidInput

CLIENT_SECRET = b"roster/sso/oidc-client-secret/v1"
PKCE_VERIFIER = b"roster/sso/oidc-pkce-verifier/v1"
UPSTREAM_ID_TOKEN = b"roster/sso/upstream-id-token/v1"


def _fernet(secret_key: str, purpose: bytes) -> Fernet:
    if not secret_key:
        raise InvalidInput("app.secret_key must be set to store secrets encrypted")
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=purpose).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


@dataclass(frozen=True)
class Sealer:
    """Seal with the current key; open with the current or the previous one."""

    keys: MultiFernet

    def seal(self, text: str) -> str:
        """The Fernet token of ``text`` under the current key."""
        return self.keys.encrypt(text.encode()).decode()

    def open(self, token: str | None) -> str | None:
        """The text sealed in ``token``; None when there is none or neither key opens it."""
        if not token:
            return None
        try:
            return self.keys.decrypt(token.encode()).decode()
        except InvalidToken:
            return None

    def reseal(self, token: str) -> str | None:
        """``token`` sealed again under the current key; None when neither key opens it."""
        try:
            return self.keys.rotate(token.encode()).decode()
        except InvalidToken:
            return None


def sealer(purpose: bytes, secret_key: str, previous: str = "") -> Sealer:
    """The keys of one purpose: ``secret_key``'s, then ``previous``'s (a rotation)."""
    return Sealer(MultiFernet([_fernet(secret_key, purpose),
                               *([_fernet(previous, purpose)] if previous else [])]))
