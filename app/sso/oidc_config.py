"""OIDC relying-party settings of a connection: IdP, client, scopes, claims, algorithms.

The client secret is stored encrypted (Fernet) with a key derived from the app's
secret_key by HKDF, so the database alone never reveals it.
"""

from __future__ import annotations

from collections.abc import Sequence

from authlib.common.security import is_secure_transport
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import utcnow
from app.errors import InvalidInput
from app.events.endpoints import MASK, endpoint_key
from app.models.sso import LoginSession, OidcLoginRequest, SsoConnection
from app.sso.sealed import CLIENT_SECRET, PKCE_VERIFIER, UPSTREAM_ID_TOKEN, sealer
from app.sso.subject_links import forget_subjects

# Signature algorithms accepted when a connection names none (RFC 7518 §3.1). Real IdPs sign
# with RS256 (Okta, Entra), RS512 (canaille) and ES256; "none" is never accepted.
DEFAULT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
SUPPORTED_ALGORITHMS = frozenset({*DEFAULT_ALGORITHMS, "PS512", "ES512", "EdDSA"})
DEFAULT_SCOPES = "openid email profile"
DEFAULT_GROUPS_CLAIM = "groups"


def encrypt_client_secret(secret_key: str, secret: str) -> str:
    """Encrypt a client secret for the database (Fernet, key = HKDF-SHA256(secret_key))."""
    if not secret_key:
        raise InvalidInput("app.secret_key must be set to store OIDC client secrets")
    return sealer(CLIENT_SECRET, secret_key).seal(secret)


def decrypt_client_secret(secret_key: str, token: str, previous: str = "") -> str:
    """The plaintext client secret, encrypted with ``secret_key`` or with ``previous``;
    InvalidInput when neither is the key it was stored with."""
    secret = sealer(CLIENT_SECRET, secret_key, previous).open(token)
    if secret is None:
        raise InvalidInput("the OIDC client secret cannot be decrypted with the current "
                           "secret_key (nor app.previous_secret_key); set it again")
    return secret


def algorithms_of(conn: SsoConnection) -> list[str]:
    """The connection's allow-list of ID token signature algorithms (default when empty)."""
    return [a for a in (conn.oidc_algorithms or DEFAULT_ALGORITHMS) if a != "none"]


def groups_claim_of(conn: SsoConnection) -> str:
    """The claim carrying group names (Okta: groups, Entra: groups or roles)."""
    return str((conn.attribute_map or {}).get("groups") or DEFAULT_GROUPS_CLAIM)


def check_url(url: str, field: str) -> str:
    """An IdP URL must be https (http only on loopback, RFC 8252 §7.3), and not one copied
    from Roster's output with its credentials masked (``***``)."""
    if not url or len(url) > 1000 or not is_secure_transport(url):
        raise InvalidInput(f"{field} must be an https URL", field=field)
    if MASK in url:
        raise InvalidInput(f"{field} holds a masked credential (***), as Roster shows it: "
                           "give the URL in full", field=field)
    return url


def _algorithms(values: Sequence[str]) -> list[str]:
    chosen = list(dict.fromkeys(v.strip() for v in values if v.strip()))
    if "none" in (v.lower() for v in chosen):
        raise InvalidInput("alg none is never allowed", field="algorithms")
    unknown = [v for v in chosen if v not in SUPPORTED_ALGORITHMS]
    if unknown:
        raise InvalidInput(f"unsupported algorithms: {', '.join(unknown)}", field="algorithms")
    return chosen


def configure_oidc(session: Session, conn: SsoConnection, actor: Actor, *, secret_key: str,
                   discovery_url: str | None = None, client_id: str | None = None,
                   client_secret: str | None = None, scopes: str | None = None,
                   groups_claim: str | None = None,
                   algorithms: Sequence[str] | None = None) -> SsoConnection:
    """Set the OIDC RP fields given (others kept); audit ``sso:connection:oidc``."""
    if conn.protocol != "oidc":
        raise InvalidInput("OIDC settings are for OIDC connections")
    changed: list[str] = []
    if discovery_url is not None:
        url = check_url(discovery_url, "discovery_url")
        if conn.oidc_discovery_url and conn.oidc_discovery_url != url:
            # Another IdP: a sub is unique per issuer only (OIDC Core §2).
            forget_subjects(session, conn, actor, "idp_changed")
        conn.oidc_discovery_url = url
        changed.append("discovery_url")
    if client_id is not None:
        if not client_id.strip() or len(client_id) > 500:
            raise InvalidInput("client id must be 1 to 500 characters", field="client_id")
        conn.oidc_client_id = client_id.strip()
        changed.append("client_id")
    if client_secret is not None:
        conn.oidc_client_secret_enc = encrypt_client_secret(secret_key, client_secret)
        changed.append("client_secret")
    if scopes is not None:
        words = scopes.split()
        if "openid" not in words:
            raise InvalidInput("scopes must include openid", field="scopes")
        conn.oidc_scopes = " ".join(dict.fromkeys(words))
        changed.append("scopes")
    if groups_claim is not None:
        conn.attribute_map = {**(conn.attribute_map or {}), "groups": groups_claim.strip()}
        changed.append("groups_claim")
    if algorithms is not None:
        conn.oidc_algorithms = _algorithms(algorithms)
        changed.append("algorithms")
    conn.updated_at = utcnow()
    # Never the secret itself: only which fields changed and the public settings.
    record(session, organization_id=conn.organization_id, action="sso:connection:oidc",
           actor=actor, subject_type="sso_connection", subject_id=conn.id,
           data={"changed": changed,
                 # Its credentials masked: the record is exported and never edited.
                 "discovery_url": (endpoint_key(conn.oidc_discovery_url)
                                   if conn.oidc_discovery_url else None),
                 "client_id": conn.oidc_client_id, "scopes": conn.oidc_scopes,
                 "algorithms": algorithms_of(conn), "groups_claim": groups_claim_of(conn)})
    return conn


def rekey_client_secrets(session: Session, actor: Actor, *, secret_key: str,
                         previous: str) -> tuple[int, list[str]]:
    """Re-encrypt every stored OIDC client secret with ``secret_key`` (those stored with
    ``previous``, before a rotation, and the others anew); audit ``sso:connection:rekey``
    per connection. The count re-encrypted, and the ids of connections whose secret neither
    key opens (to set again)."""
    keys, done, unreadable = sealer(CLIENT_SECRET, secret_key, previous), 0, []
    for conn in session.scalars(select(SsoConnection).where(
            SsoConnection.oidc_client_secret_enc.is_not(None)).order_by(SsoConnection.id)):
        # Decrypted with either key, encrypted again with the first (MultiFernet).
        resealed = keys.reseal(conn.oidc_client_secret_enc or "")
        if resealed is None:
            unreadable.append(conn.id)
            continue
        conn.oidc_client_secret_enc = resealed
        done += 1
        record(session, organization_id=conn.organization_id, action="sso:connection:rekey",
               actor=actor, subject_type="sso_connection", subject_id=conn.id, data={})
    return done, unreadable


def rekey_login_secrets(session: Session, *, secret_key: str,
                        previous: str) -> tuple[int, int]:
    """Seal again with ``secret_key`` the PKCE verifiers of login attempts in flight and the
    upstream ID tokens of logins (app/sso/sealed.py). One neither key opens is left as it
    is (its attempt ends with ``missing_pkce_verifier``, its logout at the IdP goes without
    ``id_token_hint``; the SSO purge removes it). The counts resealed: (verifiers, tokens)."""
    verifiers, id_tokens = (sealer(PKCE_VERIFIER, secret_key, previous),
                            sealer(UPSTREAM_ID_TOKEN, secret_key, previous))
    attempts = logins = 0
    for attempt in session.scalars(select(OidcLoginRequest).where(
            OidcLoginRequest.code_verifier.is_not(None)).order_by(OidcLoginRequest.id)):
        resealed = verifiers.reseal(attempt.code_verifier or "")
        if resealed is not None:
            attempt.code_verifier, attempts = resealed, attempts + 1
    for login in session.scalars(select(LoginSession).where(
            LoginSession.upstream_id_token.is_not(None)).order_by(LoginSession.id)):
        resealed = id_tokens.reseal(login.upstream_id_token or "")
        if resealed is not None:
            login.upstream_id_token, logins = resealed, logins + 1
    return attempts, logins
