"""The deployment's Ed25519 key: signs receipts and checkpoints; verification needs only PEM."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.errors import InvalidInput
from app.settings_checks import DEV_KEY_FILE_EMPTY


class SigningKeyMissing(InvalidInput):
    """Production without a configured signing key."""


@dataclass(frozen=True)
class SigningKey:
    """A private key and the short id its public key is known by."""

    private: Ed25519PrivateKey
    key_id: str

    def public_pem(self) -> str:
        """The public key as SubjectPublicKeyInfo PEM (what auditors keep)."""
        return public_pem(self.private.public_key())

    def sign(self, payload: dict[str, Any]) -> str:
        """Base64 Ed25519 signature over the canonical JSON of ``payload`` (RFC 8032)."""
        return base64.b64encode(self.private.sign(canonical(payload))).decode()


def canonical(payload: dict[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: the exact bytes that are signed."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()


def public_pem(public: Ed25519PublicKey) -> str:
    """PEM text of a public key."""
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def key_id_of(public: Ed25519PublicKey) -> str:
    """First 16 hex digits of the SHA-256 of the raw public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    """Parse a PEM public key (or a private key, whose public half is used)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(pem, password=None).public_key()
        except (ValueError, TypeError):
            raise InvalidInput("not an Ed25519 PEM key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInput("not an Ed25519 key")
    return key


def verify_signature(public: Ed25519PublicKey, payload: dict[str, Any], signature: str) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of the canonical payload."""
    try:
        public.verify(base64.b64decode(signature, validate=True), canonical(payload))
    except (InvalidSignature, ValueError):
        return False
    return True


def former_public_keys(settings: dict[str, dict[str, Any]]) -> list[Ed25519PublicKey]:
    """The public keys of former signing keys (``signing.former_public_key_files``), which
    checkpoints and receipts signed before a key rotation are checked with; the files are
    checked at start (app/settings_checks.py)."""
    return [load_public_key(Path(path).read_bytes())
            for path in settings["signing"]["former_public_key_files"]]


def verification_keys(key: SigningKey, former: list[Ed25519PublicKey],
                      extra: list[Ed25519PublicKey] | None = None,
                      ) -> dict[str, Ed25519PublicKey]:
    """The public keys checkpoints and receipts are checked with, by key id: this
    deployment's, the ``former`` ones configured (``former_public_keys``: the API reads them
    once at start), and ``extra`` (``roster audit verify --public-key``)."""
    publics = [key.private.public_key(), *former, *(extra or [])]
    return {key_id_of(public): public for public in publics}


def _from_pem(pem: bytes, setting: str = "signing.private_key") -> SigningKey:
    """The key in ``pem``; an error names ``setting``, where the operator put it (a bad
    dev_key_file was said to be signing.private_key, a setting left unset)."""
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise InvalidInput(f"{setting} is not a PEM private key") from None
    if not isinstance(private, Ed25519PrivateKey):
        raise InvalidInput(f"{setting} must be an Ed25519 key")
    return SigningKey(private=private, key_id=key_id_of(private.public_key()))


def load_signing_key(settings: dict[str, dict[str, Any]], root: Path) -> SigningKey:
    """The configured key; in development/test a generated key kept in signing.dev_key_file."""
    configured = settings["signing"]["private_key"]
    if configured:
        return _from_pem(configured.encode())
    if settings["app"]["env"] == "production":
        raise SigningKeyMissing("signing.private_key is required in production: set "
                                "ROSTER_SIGNING__PRIVATE_KEY or ROSTER_SIGNING__PRIVATE_KEY_FILE")
    if not settings["signing"]["dev_key_file"].strip():  # Path("") is the directory itself
        raise InvalidInput(DEV_KEY_FILE_EMPTY)
    path = Path(settings["signing"]["dev_key_file"])
    path = path if path.is_absolute() else root / path
    setting = f"signing.dev_key_file ({path})"
    if not path.exists():
        try:
            _create_dev_key(path)
        except OSError as exc:  # a read-only or missing parent
            raise InvalidInput(f"{setting} cannot be made: {exc.strerror or exc}") from None
    try:
        pem = path.read_bytes()
    except OSError as exc:  # a directory, no permission
        raise InvalidInput(f"{setting} cannot be read: {exc.strerror or exc}") from None
    return _from_pem(pem, setting)


def _create_dev_key(path: Path) -> None:
    """Write a fresh key once; concurrent processes race safely on O_EXCL."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    # A new file, 0600 from its creation (mkstemp: O_CREAT | O_EXCL): written by name, then
    # chmod-ed, the key sat in a 0644 file for a moment, and in any file of that name made
    # beforehand (or opened meanwhile) for good.
    descriptor, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(pem)
        os.link(tmp, path)  # atomic and fails if another process won the race
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
