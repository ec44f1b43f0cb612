"""Checks of the key material and client credentials settings name (SAML SP key pairs, the
OIDC provider's keys, the audit signing key, the portal's client secret and authentication
method), run by ``settings.validate`` at start like ``app/settings_checks.py``.

A key file that was unreadable or not PEM surfaced only at its first use (a 500 at the first
SAML metadata, login or OIDC discovery request); a signing key that was no Ed25519 key failed
each receipt once signed. Values are never repeated in a problem: they may be secrets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    load_pem_private_key,
    load_pem_public_key,
)

# The SAML SP key pairs of [sso]: (key setting, certificate setting).
# The portal's token_endpoint_auth_method (RFC 7591 §2); "" is either.
PORTAL_AUTH_METHODS = ("", "client_secret_basic", "client_secret_post")
SP_PAIRS = (("sp_key_file", "sp_cert_file"), ("sp_next_key_file", "sp_next_cert_file"))
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}\Z")
# Longer than any path a configuration names; a PEM key's base64 body is over 1,500.
_LONGEST_PATH = 1024


def key_problems(settings: dict[str, dict[str, Any]]) -> list[str]:
    """Every problem of the key material and portal credential settings."""
    return [*key_file_problems(settings),
            *signing_key_problems(settings["signing"]["private_key"]),
            *portal_secret_problems(settings["oidc_provider"]),
            *portal_auth_method_problems(settings["oidc_provider"])]


def key_file_problems(settings: dict[str, dict[str, Any]]) -> list[str]:
    """SAML SP key pairs, OIDC provider keys and former audit signing keys that are half set,
    unreadable or not PEM."""
    sso, provider = settings["sso"], settings["oidc_provider"]
    problems = []
    for key_name, cert_name in SP_PAIRS:
        key_file, cert_file = sso[key_name], sso[cert_name]
        if bool(key_file) != bool(cert_file):
            problems.append(f"sso.{key_name} and sso.{cert_name} must be set together")
            continue
        if key_file:
            # RSA: AuthnRequests are signed RSA-SHA256, assertions encrypted to an RSA key.
            problems.extend(_pem_problem(f"sso.{key_name}", key_file, _rsa_private_key))
            problems.extend(_pem_problem(f"sso.{cert_name}", cert_file, _certificate))
    if provider["signing_key_file"]:
        problems.extend(_pem_problem("oidc_provider.signing_key_file",
                                     provider["signing_key_file"], _rsa_private_key))
    for path in provider["published_key_files"]:
        problems.extend(_pem_problem("oidc_provider.published_key_files", path, _rsa_key))
    for path in settings["signing"]["former_public_key_files"]:
        problems.extend(_pem_problem("signing.former_public_key_files", path, _ed25519_key))
    return problems


def portal_secret_problems(provider: dict[str, Any]) -> list[str]:
    """``portal_client_secret_sha256`` that is not a SHA-256 in hex: most likely the secret
    itself, which then sat in clear in the configuration while no secret matched it (every
    portal token request was invalid_client). The value is never repeated."""
    value = provider["portal_client_secret_sha256"]
    if not value or _SHA256_HEX.match(value):
        return []
    return ["oidc_provider.portal_client_secret_sha256 must be the SHA-256 of the portal's "
            "client secret as 64 hex digits (printf %s \"$SECRET\" | sha256sum), never the "
            "secret itself; the value set is not (it is not shown)"]


def portal_auth_method_problems(provider: dict[str, Any]) -> list[str]:
    """``portal_token_endpoint_auth_method`` that names no method the provider offers."""
    value = provider["portal_token_endpoint_auth_method"]
    if value in PORTAL_AUTH_METHODS:
        return []
    return [f"oidc_provider.portal_token_endpoint_auth_method must be client_secret_basic, "
            f"client_secret_post or \"\" (either), got {value!r}"[:300]]


def _pem_problem(setting: str, path: str, check: Callable[[bytes], str | None]) -> list[str]:
    """Whether the file at ``path`` can be read and holds what ``check`` wants. A value that
    is no path but the key itself (PEM text, or its base64 body: longer than any real path)
    is named, never repeated: 'cannot read <value>' put the private key in every log."""
    if "-----BEGIN" in path or "\n" in path or len(path) > _LONGEST_PATH:
        return [f"{setting} must be the path of a PEM file; the value set looks like the "
                "file's content (it is not shown): put the key in a file and name the file"]
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return [f"{setting}: cannot read {path}: {exc.strerror}"]
    wrong = check(data)
    return [f"{setting}: {path} is not {wrong}"] if wrong else []


def _certificate(data: bytes) -> str | None:
    try:
        x509.load_pem_x509_certificate(data)
    except ValueError:
        return "a PEM certificate"
    return None


def _rsa_private_key(data: bytes) -> str | None:
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    return None if isinstance(key, rsa.RSAPrivateKey) else "an unencrypted PEM RSA private key"


def _ed25519_key(data: bytes) -> str | None:
    """An Ed25519 public key, or a private one (its public half is used), as PEM."""
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        try:
            key = load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm):
            key = None
    return None if isinstance(key, ed25519.Ed25519PublicKey) else \
        "a PEM Ed25519 key (public or private)"


def _rsa_key(data: bytes) -> str | None:
    if _rsa_private_key(data) is None:
        return None
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    return None if isinstance(key, rsa.RSAPublicKey) else "a PEM RSA key (private or public)"


def signing_key_problems(private_key: str) -> list[str]:
    """``signing.private_key`` that is set but no Ed25519 private key: only its presence was
    checked, and receipts and checkpoints failed once signed (the value is not shown)."""
    if not private_key:
        return []
    try:
        key = load_pem_private_key(private_key.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return []
    return ["signing.private_key must be an unencrypted PEM Ed25519 private key (openssl "
            "genpkey -algorithm ed25519); the value set is not (it is not shown)"]
