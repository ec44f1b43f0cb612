"""ID token validation (OIDC Core 1.0 §3.1.3.7) and claims -> asserted identity.

The signature is checked with joserfc against the IdP's JWKS, with an allow-list of
algorithms per connection; ``alg: none`` is refused before any key is looked up.
"""

from __future__ import annotations

import base64
import hmac
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import KeySet

from app.models.sso import SsoConnection
from app.sso.login import AssertedUser
from app.sso.oidc_config import groups_claim_of
from app.sso.outcome import LoginFailed

# Key type each JWS algorithm family needs (RFC 7518 §3.1, RFC 8037 §3.1).
_KTY = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
# Standard claims (OIDC Core §5.1) read for each field, unless the connection names its own.
OIDC_CLAIMS = {"email": "email", "user_name": "preferred_username", "given_name": "given_name",
               "family_name": "family_name", "external_id": "sub", "department": "department"}
_MAX_GROUPS = 1000


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is no finite number")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity (RFC 8259 §6)


def _b64json(part: str) -> dict[str, Any]:
    """A JOSE header or claims set: a JSON object with finite numbers only. Python's JSON
    reads NaN, Infinity and 1e400 (infinity); a claim of one, traced, made PostgreSQL refuse
    the trace's payload (a 500), and an ``exp`` of it never expired."""
    try:
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)),
                           parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:  # JSON nested thousands deep: a 500 before
        raise ValueError("nested too deep") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def unverified_parts(id_token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims read WITHOUT verification: only for choosing a key and for traces."""
    parts = id_token.split(".")
    if len(parts) != 3:
        raise LoginFailed("malformed_id_token", "the ID token is not a compact JWS")
    try:
        return _b64json(parts[0]), _b64json(parts[1])
    except ValueError:
        raise LoginFailed("malformed_id_token", "the ID token is not base64url JSON") from None


def candidate_keys(jwks: dict[str, Any], header: dict[str, Any]) -> list[Any]:
    """The JWKs that may have signed a token with this header: of the key type its ``alg``
    needs (and, where a JWK names its own ``alg``, that one), named by its kid; without a
    kid, the only such signing key, else none.

    RFC 7517 §4.5: keys of different types may share a kid in one JWK Set, so the kid alone
    does not choose a key (the first key of the kid was taken: an EC key listed before the
    RSA key of the same kid made every RS256 login ``bad_signature``); keys of one type
    sharing a kid are all tried (:func:`validate_id_token`)."""
    listed = jwks.get("keys", [])
    signing = [k for k in listed if isinstance(k, dict) and k.get("use") in (None, "sig")] \
        if isinstance(listed, list) else []
    keys = []
    for raw in signing:
        try:
            keys.extend(KeySet.import_key_set({"keys": [raw]}).keys)
        except (JoseError, ValueError, TypeError, KeyError):
            # A key of an unknown curve or type is skipped (RFC 7517 §5: implementations
            # SHOULD ignore JWKs they do not understand); one made a 500 of every login.
            continue
    if (signing and not keys) or not isinstance(listed, list):
        raise LoginFailed("discovery_failed", "the IdP's JWKS cannot be read")
    alg = header.get("alg")
    kid, kty = header.get("kid"), _KTY.get(str(alg or "")[:2])
    fitting = [k for k in keys if k.key_type == kty and k.get("alg") in (None, alg)]
    if kid is not None:
        return [k for k in fitting if k.kid == kid]
    return fitting if len(fitting) == 1 else []


@dataclass(frozen=True)
class Expected:
    """What a valid ID token must say: our client, the IdP, this attempt's nonce."""

    issuer: str
    client_id: str
    nonce: str
    algorithms: tuple[str, ...]
    skew_seconds: int


def _numeric_date(value: Any) -> bool:
    """A NumericDate (RFC 7519 §2): a finite number of seconds. Python's JSON reads NaN and
    Infinity (and 1e400 as infinity): an ``exp`` of NaN or Infinity never expired, and
    ``true`` was read as 1."""
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value)


def _check_claims(claims: dict[str, Any], want: Expected, now: float) -> None:
    if claims.get("iss") != want.issuer:
        raise LoginFailed("wrong_issuer", f"iss {claims.get('iss')!r} is not {want.issuer}")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if want.client_id not in audiences:
        raise LoginFailed("wrong_audience", f"aud {aud!r} does not name our client")
    azp = claims.get("azp")
    if (azp is not None or len(audiences) > 1) and azp != want.client_id:
        raise LoginFailed("wrong_audience", f"azp {azp!r} is not our client")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not _numeric_date(exp) or not _numeric_date(iat):
        raise LoginFailed("malformed_id_token", "exp and iat are required numbers")
    if exp + want.skew_seconds < now:
        raise LoginFailed("token_expired", "the ID token has expired")
    if iat - want.skew_seconds > now:
        raise LoginFailed("token_not_yet_valid", "the ID token was issued in the future")
    nbf = claims.get("nbf")
    if nbf is not None and not _numeric_date(nbf):
        raise LoginFailed("malformed_id_token", "nbf is not a number")
    if nbf is not None and nbf - want.skew_seconds > now:
        raise LoginFailed("token_not_yet_valid", "the ID token is not valid yet")
    nonce = claims.get("nonce")
    # surrogatepass: JSON's lone "\ud800" is a str that strict UTF-8 cannot encode (a
    # UnicodeEncodeError, a 500); so encoded, it is simply another nonce.
    if not isinstance(nonce, str) or not hmac.compare_digest(
            nonce.encode("utf-8", "surrogatepass"), want.nonce.encode()):
        raise LoginFailed("bad_nonce", "the nonce does not match this login attempt")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise LoginFailed("malformed_id_token", "the ID token has no sub")


def _verified(id_token: str, keys: list[Any], alg: str) -> dict[str, Any]:
    """The claims, if one of ``keys`` verifies the signature (RFC 7515 §5.2)."""
    failure = LoginFailed("bad_signature", "the ID token signature does not verify")
    for key in keys:
        try:
            return dict(jwt.decode(id_token, key, algorithms=[alg]).claims)
        except BadSignatureError:
            continue
        except (JoseError, ValueError, TypeError) as exc:
            failure = LoginFailed("bad_signature", f"the ID token cannot be verified: {exc}")
    raise failure


def validate_id_token(id_token: str, want: Expected,
                      jwks_for: Callable[[bool], dict[str, Any]], now: float) -> dict[str, Any]:
    """Verify alg, signature (JWKS, re-read once if the kid is unknown) and claims (§3.1.3.7)."""
    header, _ = unverified_parts(id_token)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none" or alg not in want.algorithms:
        raise LoginFailed("alg_not_allowed", f"alg {alg!r} is not in the connection's allow-list")
    crit = header.get("crit")
    if crit is not None and not (isinstance(crit, list) and crit
                                 and all(isinstance(name, str) for name in crit)):
        # RFC 7515 §4.1.11: a non-empty array of header names. joserfc raised a TypeError
        # (a 500) on a name that is no string.
        raise LoginFailed("malformed_id_token", "the header's crit is not a non-empty array "
                          "of names (RFC 7515 section 4.1.11)")
    keys = candidate_keys(jwks_for(False), header) or candidate_keys(jwks_for(True), header)
    if not keys:
        raise LoginFailed("unknown_signing_key",
                          f"no key {header.get('kid')!r} for {alg} in the IdP's JWKS")
    claims = _verified(id_token, keys, alg)
    _check_claims(claims, want, now)
    return claims


def _text(value: Any) -> str | None:
    return str(value) if isinstance(value, str | int) and str(value) else None


def asserted_identity(conn: SsoConnection, claims: dict[str, Any]) -> AssertedUser:
    """Map verified claims to the protocol-neutral identity, honouring the connection's names."""
    names = {**OIDC_CLAIMS, **{k: v for k, v in (conn.attribute_map or {}).items()
                               if k in OIDC_CLAIMS and isinstance(v, str) and v}}
    value = {field: _text(claims.get(claim)) for field, claim in names.items()}
    # An address the IdP itself says is unverified must not select an account (OIDC Core §5.1).
    # Some IdPs send the flag as a string ("false"): unverified all the same.
    verified = claims.get("email_verified")
    unverified = verified is False or (isinstance(verified, str)
                                       and verified.strip().lower() == "false")
    email = None if unverified else value["email"]
    raw_groups = claims.get(groups_claim_of(conn))
    groups = ([raw_groups] if isinstance(raw_groups, str)
              else raw_groups if isinstance(raw_groups, list) else [])
    return AssertedUser(
        # OIDC Core §2: sub is never reassigned by its issuer, so it is pinned.
        subject=claims["sub"], email=email.lower() if email else None, stable_subject=True,
        user_name=value["user_name"], external_id=value["external_id"],
        given_name=value["given_name"], family_name=value["family_name"],
        department=value["department"],
        groups=tuple(dict.fromkeys(g for g in groups[:_MAX_GROUPS]
                                   if isinstance(g, str) and g)))


def auth_time(claims: dict[str, Any]) -> datetime | None:
    """The ID token's ``auth_time`` (OIDC Core §2): when the IdP authenticated the user;
    None when absent or not a plausible number of seconds."""
    value = claims.get("auth_time")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (ValueError, OverflowError, OSError):
        return None
