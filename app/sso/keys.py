"""The deployment's SAML SP key pairs: the current one and, during rollover, the next one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import InvalidInput


@dataclass(frozen=True)
class KeyPair:
    """A PEM private key and its certificate, read from files named in [sso]."""

    key_pem: str = field(repr=False)  # a repr in a log or a traceback never shows the key
    cert_pem: str


@dataclass(frozen=True)
class SpKeys:
    """Current pair (signs requests) and next pair (published early, tried for decryption)."""

    current: KeyPair | None
    next: KeyPair | None

    def decryption_pairs(self) -> list[KeyPair]:
        """Every pair an IdP may have encrypted to, current first."""
        return [pair for pair in (self.current, self.next) if pair is not None]


def _read_pair(key_file: str, cert_file: str, label: str) -> KeyPair | None:
    if not key_file and not cert_file:
        return None
    if not (key_file and cert_file):
        raise InvalidInput(f"sso.{label}key_file and sso.{label}cert_file must be set together")
    try:
        return KeyPair(Path(key_file).read_text(), Path(cert_file).read_text())
    except OSError as exc:
        raise InvalidInput(f"cannot read SP key material: {exc.strerror}") from None


def load_sp_keys(sso_settings: dict[str, Any]) -> SpKeys:
    """Read the SP key pairs named in the [sso] settings (paths; the files are secrets)."""
    return SpKeys(
        current=_read_pair(sso_settings["sp_key_file"], sso_settings["sp_cert_file"], "sp_"),
        next=_read_pair(sso_settings["sp_next_key_file"], sso_settings["sp_next_cert_file"],
                        "sp_next_"),
    )
