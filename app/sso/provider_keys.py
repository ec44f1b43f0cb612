"""Signing keys of the OpenID Provider: one signs, all are published in the JWKS (rotation)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey

from app.errors import InvalidInput

ALG = "RS256"


@dataclass(frozen=True)
class ProviderKeys:
    """The key that signs now, and every key a relying party may still meet (RFC 7517 §5)."""

    signing: RSAKey
    published: tuple[RSAKey, ...]

    def jwks(self) -> dict[str, Any]:
        """The public JWK Set served at the jwks_uri."""
        return KeySet(list(self.published)).as_dict(private=False)

    def own_claims(self, token: str, issuer: str) -> dict[str, Any] | None:
        """The claims of an ID token this provider signed (any published key) for
        ``issuer``, expired or not (a hint, OIDC Core §3.1.2.1, RPIL §2); else None."""
        try:
            claims = dict(jwt.decode(token, KeySet(list(self.published)),
                                     algorithms=[ALG]).claims)
        except (JoseError, ValueError, TypeError):
            return None
        return claims if claims.get("iss") == issuer else None

    @property
    def kid(self) -> str:
        """Key id of the signing key (its RFC 7638 thumbprint)."""
        return str(self.signing.kid)


def _load(path: str) -> RSAKey:
    try:
        pem = Path(path).read_text()
    except OSError as exc:
        raise InvalidInput(f"cannot read OIDC provider key {path}: {exc.strerror}") from None
    key = RSAKey.import_key(pem)
    return RSAKey.import_key(pem, {"kid": key.thumbprint(), "use": "sig", "alg": ALG})


def load_provider_keys(settings: dict[str, Any]) -> ProviderKeys | None:
    """Keys named in [oidc_provider]; None when the provider is not configured."""
    if not settings["signing_key_file"]:
        return None
    signing = _load(settings["signing_key_file"])
    others = [_load(p) for p in settings["published_key_files"]]
    published = (signing, *(k for k in others if k.kid != signing.kid))
    return ProviderKeys(signing=signing, published=published)
