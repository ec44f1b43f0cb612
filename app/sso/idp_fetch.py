"""What a failed fetch from a customer's IdP tells its caller (OWASP SSRF prevention).

The URLs Roster fetches from (SAML metadata, OIDC discovery, JWKS, token endpoint) come
from a customer admin. With ``sso.idp_private_addresses`` off, every such fetch runs under
:func:`app.public_address.public_only`: a host resolving to an address that is not public
is refused, and a connection that fails is reported without the operating system's words
("Connection refused", "Name or service not known", the address tried), which let an admin
map what lies behind Roster: a name resolving privately is told as a name that does not
resolve (:data:`NO_CONNECTION`), an address as written as :data:`NOT_PUBLIC`. The full
error goes to the server log (URL credentials masked, app/url_masks.py); an HTTP status
from a public host is kept.
"""

from __future__ import annotations

import ipaddress
import logging
import urllib.error
from urllib.parse import urlsplit

import requests

from app.errors import InvalidInput
from app.events.endpoints import endpoint_key, scrub
from app.public_address import AddressNotPublic, check_host, public_only

log = logging.getLogger("roster.sso")

NOT_PUBLIC = "the IdP address is not public (sso.idp_private_addresses is off)"
NO_CONNECTION = ("could not fetch it (no connection could be made, or its address is not "
                 "public while sso.idp_private_addresses is off; the server log says which)")


def written_address(host: str) -> bool:
    """Whether ``host`` is an address as written (IPv4, IPv6 in brackets or not, a zone) or
    ``localhost`` (loopback whatever the DNS says, RFC 6761 §6.3): saying it is not public
    tells the admin nothing they did not write. Of any other name it would tell that it
    resolves inside Roster's network, so a customer admin trying names would map the names
    there (a database's, a Kubernetes service's): such a name is told as one that does not
    resolve, :data:`NO_CONNECTION`, and the server log says which it was."""
    bare = host.strip("[]").split("%", 1)[0].rstrip(".").lower()
    if bare == "localhost" or bare.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        return False
    return True


def not_public(url: str, exc: AddressNotPublic) -> str:
    """Log the refusal with the address (for the operator) and say :data:`NOT_PUBLIC` of an
    address as written, :data:`NO_CONNECTION` of a name (:func:`written_address`)."""
    log.warning("refused an IdP fetch from %s: %s resolves to %s, not a public address "
                "(sso.idp_private_addresses is off)", endpoint_key(url),
                endpoint_key(f"https://{exc.host}/").removeprefix("https://").rstrip("/"),
                exc.address)
    return NOT_PUBLIC if written_address(exc.host) else NO_CONNECTION


def not_public_reason(exc: AddressNotPublic) -> str:
    """The failed-login reason of that refusal, which the tenant's admin reads in the traces:
    ``idp_not_public`` for an address as written, ``idp_unreachable`` for a name."""
    return "idp_not_public" if written_address(exc.host) else "idp_unreachable"


def failure(url: str, exc: BaseException, *, private_ok: bool) -> str:
    """Why a fetch from ``url`` failed, as its caller may see it: the error itself (URL
    credentials masked) with private addresses allowed, or an HTTP status; otherwise
    :data:`NO_CONNECTION`, the error itself logged."""
    shown = scrub(str(exc), url)
    if private_ok or isinstance(exc, requests.HTTPError | urllib.error.HTTPError):
        return shown
    log.warning("IdP fetch from %s failed: %s", endpoint_key(url), shown[:500])
    return NO_CONNECTION


def check_public(url: str, field: str, *, private_ok: bool) -> None:
    """Refuse an IdP URL whose host is an address that is not public, or ``localhost`` (a
    400 naming ``field``), when ``private_ok`` is false: said when the URL is given, even
    if it is not read yet (``check_discovery: false``). The fetches check again, on the
    address they connect to; a name is left to them, as a host that does not resolve yet
    is (refused here, a name resolving privately answered 400 where one not resolving was
    stored: the same map of names as :func:`written_address` tells of)."""
    if private_ok:
        return
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return  # not a URL: the field's own checks say so
    if not host or not written_address(host):
        return  # a name: the fetches check it, and tell it as one that does not resolve
    try:
        with public_only():
            check_host(host, port or (443 if parts.scheme == "https" else 80))
    except AddressNotPublic as exc:
        raise InvalidInput(f"{field}: {not_public(url, exc)}", field=field) from None
