"""The OpenID Provider's settings, resolved once per app (issuer, keys, the portal client,
lifetimes): imported by the provider, its views, RP logout, back-channel logout and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.sso.provider_keys import ProviderKeys, load_provider_keys

# The issuer is the deployment base URL plus this path (endpoints live under it).
PREFIX = "/sso/oidc"


@dataclass(frozen=True)
class ProviderConfig:
    """What the provider needs from settings, resolved once per app."""

    issuer: str
    keys: ProviderKeys
    client_id: str
    client_secret_sha256: str = field(repr=False)
    redirect_uris: tuple[str, ...]
    backchannel_logout_uri: str
    access_seconds: int
    id_token_seconds: int
    refresh_seconds: int
    code_seconds: int
    # Where RP-initiated logout may send the browser back to (exact match, OIDC RPIL §3).
    post_logout_redirect_uris: tuple[str, ...] = ()
    # The portal's registered client authentication method (RFC 7591 §2
    # token_endpoint_auth_method); "" takes either.
    auth_method: str = ""


def config_from_settings(settings: dict[str, dict[str, Any]]) -> ProviderConfig | None:
    """The provider's configuration from [app] and [oidc_provider]; None without a key."""
    op = settings["oidc_provider"]
    keys = load_provider_keys(op)
    if keys is None:
        return None
    return ProviderConfig(
        issuer=settings["app"]["base_url"].rstrip("/") + PREFIX, keys=keys,
        client_id=op["portal_client_id"], client_secret_sha256=op["portal_client_secret_sha256"],
        redirect_uris=tuple(op["portal_redirect_uris"]),
        backchannel_logout_uri=op["portal_backchannel_logout_uri"],
        access_seconds=op["access_token_seconds"], id_token_seconds=op["id_token_seconds"],
        refresh_seconds=op["refresh_token_seconds"], code_seconds=op["authorization_code_seconds"],
        post_logout_redirect_uris=tuple(op["portal_post_logout_redirect_uris"]),
        auth_method=op["portal_token_endpoint_auth_method"])
