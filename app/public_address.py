"""Outbound connections to the public internet only: no server-side request forgery.

A customer admin names the URLs Roster fetches from its IdP (SAML metadata, OIDC discovery,
and the JWKS and token endpoints the discovery document names). Unchecked, that reached
loopback, the private networks (RFC 1918, RFC 4193), link-local addresses (the cloud
metadata service at 169.254.169.254), CGNAT (RFC 6598) and the like: OWASP's server-side
request forgery. Under :func:`public_only` every connection an opener or session of
app/http_deadline.py makes in this thread resolves its host once, refuses it when any of
its addresses is not global (:func:`is_public`, the IANA special-purpose registries, RFC
6890), and connects to the address it checked: a DNS answer that changes between a check
and the connection (DNS rebinding) cannot slip through, and every redirect's connection is
checked the same way.

Through an egress proxy (``https_proxy``) Roster connects to the proxy, which the operator
chose; the target host of the tunnel (HTTP CONNECT) is then checked by resolving it here,
and the proxy's own resolution is the proxy's to police.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

_state = threading.local()

# IPv6 prefixes that carry an IPv4 address a gateway on the path would reach: NAT64's
# well-known and local-use prefixes (RFC 6052, RFC 8215) and IPv4-compatible addresses.
_EMBEDDING = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"),
              ipaddress.IPv6Network("::/96"))


class AddressNotPublic(Exception):
    """A host resolved to an address that is not on the public internet. Not an OSError:
    urllib, urllib3 and requests let it through unwrapped, so the caller can tell it from
    an unreachable host."""

    def __init__(self, host: str, address: str) -> None:
        super().__init__(f"{host} resolves to {address}, which is not a public address")
        self.host, self.address = host, address


def is_public(address: str) -> bool:
    """Whether ``address`` is a global unicast address (not loopback, private, shared,
    link-local, multicast, unspecified, reserved or documentation), an IPv6 address
    carrying an IPv4 one (mapped, NAT64, 6to4, Teredo) judged by the IPv4 one too."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if ip.is_multicast or not ip.is_global:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        embedded += [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
                     for net in _EMBEDDING if ip in net]
        return all(is_public(str(v4)) for v4 in embedded if v4 is not None)
    return True


def _literal(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def resolved(host: str, port: int) -> list[tuple[Any, ...]]:
    """``host``'s addresses (getaddrinfo, TCP), all public, or AddressNotPublic."""
    infos = socket.getaddrinfo(_literal(host), port, 0, socket.SOCK_STREAM)
    for *_, sockaddr in infos:
        if not is_public(str(sockaddr[0])):
            raise AddressNotPublic(host, str(sockaddr[0]))
    return infos


def check_host(host: str, port: int = 443) -> None:
    """Refuse ``host`` when public-only connections are on and it resolves to an address
    that is not public (a resolution failure is left to the connection that follows)."""
    if not active():
        return
    with contextlib.suppress(OSError):
        resolved(host, port)


Connector = Callable[[tuple[str, int]], socket.socket]


def connect(address: tuple[str, int], create: Connector) -> socket.socket:
    """``create`` (a ``create_connection``) to ``address``; with public-only connections on,
    to the addresses of ``address``'s host checked here, in turn, never resolved again."""
    if not active():
        return create(address)
    host, port = address
    last: OSError | None = None
    for *_, sockaddr in resolved(host, port):
        try:
            return create((str(sockaddr[0]), port))
        except OSError as exc:
            last = exc
    raise last or OSError(f"{host} has no address")


def active() -> bool:
    """Whether this thread's outbound connections are held to public addresses."""
    return bool(getattr(_state, "on", False))


@contextlib.contextmanager
def public_only(on: bool = True) -> Iterator[None]:
    """Hold this thread's connections (of app/http_deadline.py) to public addresses in the
    block, when ``on``."""
    before = active()
    _state.on = on
    try:
        yield
    finally:
        _state.on = before
