"""OIDC relying party toward customer IdPs: code flow with state, nonce and PKCE S256.

OpenID Connect Core 1.0 §3.1 (authorization code flow), RFC 7636 (PKCE), OIDC Discovery
1.0 §4. Discovery documents and JWKS are cached per URL in process memory; the JWKS is
re-read when an ID token names a key id we do not know (key rotation at the IdP), and an
IdP's failure to serve them is remembered for a while (app/sso/idp_cache.py). The login
attempts (state, nonce, PKCE verifier) are kept by app/sso/oidc_attempts.py. Every fetch
from the IdP reaches public addresses only unless ``sso.idp_private_addresses`` is on
(app/public_address.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, urljoin

import requests
import urllib3
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from app.errors import InvalidInput
from app.events.endpoints import endpoint_key
from app.http_deadline import cuttable_session, within
from app.public_address import AddressNotPublic, public_only
from app.sso.idp_cache import CachePolicy, DocumentCache
from app.sso.idp_fetch import failure, not_public, not_public_reason
from app.sso.oidc_config import check_url
from app.sso.outcome import LoginFailed

_MAX_DOCUMENT_BYTES = 512_000
HTTP_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Provider:
    """The IdP endpoints read from its discovery document (OIDC Discovery §3)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    token_auth_methods: tuple[str, ...]
    # RP-Initiated Logout 1.0 §2.1; None when the IdP has none (or publishes an unsafe one).
    end_session_endpoint: str | None = None
    # RFC 9207 §3: the IdP puts ``iss`` in every authorization response.
    iss_parameter: bool = False

    @classmethod
    def of(cls, discovery_url: str, doc: dict[str, Any]) -> Provider:
        """Check and read a discovery document; its issuer must prefix its URL (§4.3)."""
        fields = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
        if not all(isinstance(doc.get(f), str) and doc[f] for f in fields):
            # A field of another type is as good as missing (it was named as neither).
            raise LoginFailed("discovery_failed", "discovery document lacks " + ", ".join(
                f for f in fields if not (isinstance(doc.get(f), str) and doc[f])))
        issuer = doc["issuer"]
        if discovery_url != issuer.rstrip("/") + "/.well-known/openid-configuration":
            raise LoginFailed("discovery_failed",
                              f"issuer {issuer} does not match the discovery URL")
        # An https IdP may not send us to plain http, not even on loopback (that would let a
        # hostile discovery document reach local services); a loopback test IdP may.
        https_only = discovery_url.lower().startswith("https://")
        for field in fields[1:]:
            try:
                check_url(doc[field], field)
            except InvalidInput:
                raise LoginFailed("discovery_failed", f"{field} is not https") from None
            if https_only and not doc[field].lower().startswith("https://"):
                raise LoginFailed("discovery_failed", f"{field} is not https")
        # A JSON array of strings (RFC 8414 §2); one string alone is read as itself, any
        # other value as absent (a number made a 500 of every login).
        methods = doc.get("token_endpoint_auth_methods_supported")
        methods = [methods] if isinstance(methods, str) else \
            methods if isinstance(methods, list) else []
        return cls(issuer, doc["authorization_endpoint"], doc["token_endpoint"],
                   doc["jwks_uri"], tuple(m for m in methods if isinstance(m, str)),
                   _optional_endpoint(doc.get("end_session_endpoint"), https_only),
                   doc.get("authorization_response_iss_parameter_supported") is True)

    def client_auth_method(self) -> str:
        """client_secret_basic unless the IdP only takes client_secret_post (RFC 8414 §2)."""
        if self.token_auth_methods and "client_secret_basic" not in self.token_auth_methods:
            return "client_secret_post"
        return "client_secret_basic"


def _optional_endpoint(url: Any, https_only: bool) -> str | None:
    """An optional endpoint we would send the browser to: only a safe URL, else None."""
    if not isinstance(url, str):
        return None
    try:
        check_url(url, "end_session_endpoint")
    except InvalidInput:
        return None
    if https_only and not url.lower().startswith("https://"):
        return None
    return url


def fetch_json(url: str, timeout: float | None = None, *,
               private_ok: bool = False) -> dict[str, Any]:
    """GET a JSON document from the IdP, bounded in size and in time: the whole download
    ends within ``timeout`` seconds (default ``HTTP_TIMEOUT_SECONDS``; requests' own
    timeout bounds each read, and an IdP sending a byte at a time held the login as long as
    it liked: app/http_deadline.py). A failure names the URL with its credentials masked
    (a discovery URL's ``?token=``, a userinfo): the detail reaches API problems, the CLI,
    the log and failed-login traces.

    ``private_ok`` false (``sso.idp_private_addresses``): a host that is not on the public
    internet is refused, redirects' included (``idp_not_public``), and a failed connection
    is told without the OS's words (app/sso/idp_fetch.py)."""
    timeout = HTTP_TIMEOUT_SECONDS if timeout is None else timeout
    shown = endpoint_key(url)
    late = LoginFailed("idp_unreachable",
                       f"cannot read {shown}: no complete answer within {timeout:g} s")
    with cuttable_session() as http, within(timeout) as cut, public_only(not private_ok):
        http.hooks["response"].append(_no_downgrade(url))
        try:
            with http.get(url, timeout=timeout, stream=True,
                          headers={"Accept": "application/json"}) as response:
                response.raise_for_status()
                body = response.raw.read(_MAX_DOCUMENT_BYTES + 1, decode_content=True)
        # urllib3's errors: the body is read from the raw stream, which requests does not
        # wrap (an IdP closing before its Content-Length was reached made a 500).
        except AddressNotPublic as exc:
            raise LoginFailed(not_public_reason(exc),
                              f"cannot read {shown}: {not_public(url, exc)}") from None
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            if cut.is_set():
                raise late from None
            why = failure(url, exc, private_ok=private_ok)
            raise LoginFailed("idp_unreachable", f"cannot read {shown}: {why}"[:500]) from None
    if cut.is_set():  # cut as the last bytes came: what was read may be short
        raise late
    if len(body) > _MAX_DOCUMENT_BYTES:
        raise LoginFailed("discovery_failed", f"{shown} is too large")
    try:
        doc = json.loads(body)
    # RecursionError: arrays nested thousands deep (a 500 before, whatever the size bound).
    except (ValueError, RecursionError):
        raise LoginFailed("discovery_failed", f"{shown} is not JSON") from None
    if not isinstance(doc, dict):
        raise LoginFailed("discovery_failed", f"{shown} is not a JSON object")
    return doc


def _no_downgrade(url: str) -> Callable[..., Any]:
    """A response hook: a redirect is followed only to a URL :func:`check_url` accepts, and
    from an https URL only to https. Followed blindly, a redirect of an https IdP's document
    reached plain http, loopback included, which :meth:`Provider.of` refuses in the
    document itself (a hostile discovery document reaching local services)."""
    https_only = url.lower().startswith("https://")

    def check(response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        if not response.is_redirect:
            return response
        target = urljoin(response.url, response.headers.get("location", ""))
        try:
            check_url(target, "redirect")
        except InvalidInput:
            target_ok = False
        else:
            target_ok = not https_only or target.lower().startswith("https://")
        if not target_ok:
            raise LoginFailed("idp_unreachable", f"cannot read {endpoint_key(url)}: it "
                              f"redirects to {endpoint_key(target)}, which is not https")
        return response
    return check


class ProviderCache:
    """Discovery documents and JWKS per URL, kept ``ttl`` seconds, the IdP's failures
    remembered for a while and an expired document served while its IdP fails
    (app/sso/idp_cache.py; thread-safe, per process)."""

    def __init__(self, ttl_seconds: float = 3600.0,
                 fetch: Callable[[str], dict[str, Any]] | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 policy: CachePolicy | None = None, private_ok: bool = False) -> None:
        # private_ok: IdPs on addresses that are not public may be read (and their token
        # endpoint called: :func:`exchange_code`), ``sso.idp_private_addresses``.
        self.policy, self.private_ok = policy or CachePolicy(), private_ok
        if fetch is None:
            def fetch(url: str) -> dict[str, Any]:
                return fetch_json(url, private_ok=private_ok)
        self._documents = DocumentCache(fetch, ttl_seconds, clock=clock, policy=self.policy)

    @classmethod
    def from_settings(cls, sso: dict[str, Any], *,
                      clock: Callable[[], float] = time.monotonic) -> ProviderCache:
        """The app's cache, bounded by the ``[sso]`` settings ``idp_*``."""
        return cls(clock=clock, policy=CachePolicy.from_settings(sso),
                   private_ok=bool(sso["idp_private_addresses"]))

    def provider(self, discovery_url: str) -> Provider:
        """The IdP's endpoints (cached)."""
        return self._documents.get(discovery_url,
                                   lambda doc: Provider.of(discovery_url, doc))

    def jwks(self, jwks_uri: str, *, refresh: bool = False) -> dict[str, Any]:
        """The IdP's JWK Set document (RFC 7517 §5); ``refresh``: re-read it (an unknown
        kid), at most once per ``sso.idp_forced_refresh_seconds``."""
        def check(doc: dict[str, Any]) -> dict[str, Any]:
            if not isinstance(doc.get("keys"), list):
                raise LoginFailed("discovery_failed", "the JWKS has no keys")
            return doc
        return self._documents.get(jwks_uri, check, forced=refresh)

    def forget(self) -> None:
        """Drop every cached document and failure (tests, or an operator forcing a re-read)."""
        self._documents.forget()


def callback_url(base_url: str, connection_id: str) -> str:
    """The redirection URI to register at the IdP (RFC 6749 §3.1.2)."""
    return f"{base_url.rstrip('/')}/sso/oidc/{connection_id}/callback"


def logged_out_url(base_url: str, connection_id: str) -> str:
    """The post_logout_redirect_uri to register at the IdP (OIDC RP-Initiated Logout §3)."""
    return f"{base_url.rstrip('/')}/sso/oidc/{connection_id}/logged-out"


def exchange_code(provider: Provider, client_id: str, client_secret: str, redirect_uri: str,
                  code: str, code_verifier: str, *, private_ok: bool = False) -> str:
    """Redeem the code with the PKCE verifier (RFC 6749 §4.1.3, RFC 7636 §4.5); the ID token.
    ``private_ok`` false: a token endpoint that is not on a public address is refused
    (``idp_not_public``, as :func:`fetch_json`)."""
    if not code_verifier:
        raise LoginFailed("missing_pkce_verifier", "refusing to redeem a code without PKCE")
    late = LoginFailed("idp_unreachable", "token endpoint: no complete answer within "
                       f"{HTTP_TIMEOUT_SECONDS:g} s")
    # The whole exchange within the timeout (app/http_deadline.py), not each read.
    with cuttable_session(OAuth2Session(
            client_id, client_secret, redirect_uri=redirect_uri,
            token_endpoint_auth_method=provider.client_auth_method())) as client, \
            within(HTTP_TIMEOUT_SECONDS) as cut, public_only(not private_ok):
        # No redirect is followed: a 307 or 308 would send the code, the PKCE verifier and
        # (client_secret_post) the client secret on to wherever it points, plain http too.
        # One hook: authlib keeps them in a set, run in no particular order.
        client.register_compliance_hook("access_token_response",
                                        lambda response: _not_redirected(_bounded(response)))
        try:
            token = client.fetch_token(provider.token_endpoint, grant_type="authorization_code",
                                       code=code, code_verifier=code_verifier,
                                       timeout=HTTP_TIMEOUT_SECONDS, allow_redirects=False,
                                       stream=True)
        except AddressNotPublic as exc:
            raise LoginFailed(not_public_reason(exc), "token endpoint: " + not_public(
                provider.token_endpoint, exc)) from None
        except OAuthError as exc:
            if cut.is_set():
                raise late from None
            raise LoginFailed("token_exchange_failed", _without(
                f"{exc.error}: {exc.description or ''}", client_secret, code,
                code_verifier)[:500]) from None
        # TypeError, OverflowError: authlib reading a token response's expires_in that is
        # no number ([1], 1e400); RecursionError: JSON nested thousands deep (500s before).
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError,
                ValueError, TypeError, OverflowError, RecursionError) as exc:
            if cut.is_set():
                raise late from None
            why = failure(provider.token_endpoint, exc, private_ok=private_ok)
            raise LoginFailed("idp_unreachable", _without(
                f"token endpoint: {why}", client_secret, code, code_verifier)[:500]) from None
    if cut.is_set():
        raise late
    id_token = token.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise LoginFailed("missing_id_token", "the token response has no id_token")
    return id_token


def _bounded(response: requests.Response) -> requests.Response:
    """The token endpoint's answer read whole, if it is at most ``_MAX_DOCUMENT_BYTES`` (it
    comes as a stream): read as it came, any size, until the deadline, an IdP's answer of
    megabytes was taken in, and a valid ID token in it signed the user in."""
    body = response.raw.read(_MAX_DOCUMENT_BYTES + 1, decode_content=True)
    if len(body) > _MAX_DOCUMENT_BYTES:
        response.close()
        raise LoginFailed("idp_unreachable", "token endpoint: the answer is larger than "
                          f"{_MAX_DOCUMENT_BYTES} bytes")
    response._content = body  # what requests' .content and .json() read from now on
    response._content_consumed = True
    return response


def _not_redirected(response: requests.Response) -> requests.Response:
    """The token endpoint's answer, unless it is a redirect (not followed, refused) or a
    failure authlib would read as a token.

    Only a 200 is a token response (RFC 6749 §5.1), and an error one names its ``error``
    (§5.2); authlib took any other JSON object for a token (a 429 of an IdP rate limiting
    us, which Okta sends without ``error``), refused later as ``missing_id_token``. A 429
    is the IdP's unavailability whatever its body (``idp_unreachable``, not the client's
    failure: app/sso/fault_traces.py); a 5xx is left to authlib, which raises it as such."""
    status = response.status_code
    if response.is_redirect:
        raise LoginFailed("token_exchange_failed", f"the token endpoint answered "
                          f"{status}, a redirect (not followed)")
    if status == 429:
        raise LoginFailed("idp_unreachable", "token endpoint: the IdP answered HTTP 429 "
                          "(it is rate limiting Roster)")
    if status == 200 or status >= 500:
        return response
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return response  # not JSON: authlib raises the HTTP error
    if not isinstance(body, dict) or "error" not in body:
        raise LoginFailed("token_exchange_failed", f"token endpoint: the IdP answered HTTP "
                          f"{status} without an OAuth error")
    return response


def _without(text: str, *secrets: str) -> str:
    """``text`` (an IdP's error, kept in the login trace) with every secret of the exchange
    masked: an IdP may quote the request back, client_secret_post's secret included, as
    sent or form-encoded."""
    spellings = {form for secret in secrets if secret
                 for form in (secret, quote_plus(secret), quote(secret, safe=""))}
    for spelling in sorted(spellings, key=len, reverse=True):
        text = text.replace(spelling, "[REDACTED]")
    return text
