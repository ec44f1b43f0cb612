"""app/public_address.py: which addresses are public, and a connection made to the address
that was checked (no second resolution a DNS rebinding could answer differently)."""

from __future__ import annotations

import socket

import pytest

from app.public_address import AddressNotPublic, connect, is_public, public_only


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "10.0.0.1", "10.255.255.254", "172.16.0.1", "172.31.1.1",
    "192.168.1.1", "169.254.169.254", "169.254.0.1", "100.64.0.1", "100.127.255.254",
    "0.0.0.0", "224.0.0.1", "239.1.2.3", "240.0.0.1", "255.255.255.255", "192.0.2.7",
    "198.18.0.1", "::1", "::", "fe80::1", "fe80::1%eth0", "fc00::1", "fd12:3456::1",
    "ff02::1", "ff0e::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
    "::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1", "2002:7f00:1::1", "2002:a00:1::",
    "2001:db8::1", "not an address", ""])
def test_addresses_that_are_not_public(address):
    """Loopback, RFC 1918, link-local (cloud metadata), CGNAT, unspecified, multicast,
    reserved, documentation, RFC 4193, and IPv6 forms carrying one of those (IPv4-mapped,
    IPv4-compatible, NAT64, 6to4) are not public."""
    assert not is_public(address)


@pytest.mark.parametrize("address", [
    "8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001::200e",
    "64:ff9b::808:808"])
def test_public_addresses(address):
    """Global unicast addresses, and NAT64 of a public IPv4 address, are public."""
    assert is_public(address)


def _resolver(answers: dict[str, list[list[str]]], monkeypatch):
    """The OS resolver answering each name with the next of its lists of addresses."""
    asked: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        asked.append(host)
        found = answers[host].pop(0) if host in answers else [host]
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port)) for a in found]
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_the_connection_goes_to_the_address_checked(monkeypatch):
    """A name answered with a public address, then (DNS rebinding) with 127.0.0.1: the
    connection is made to the public address checked, by number, and the name is
    resolved once."""
    asked = _resolver({"rebind.test": [["93.184.216.34"], ["127.0.0.1"]]}, monkeypatch)
    reached: list[tuple[str, int]] = []

    def create(address):
        reached.append(address)
        return socket.socket()
    with public_only():
        connect(("rebind.test", 443), create).close()
    assert reached == [("93.184.216.34", 443)]
    assert asked == ["rebind.test"]


def test_a_name_with_any_private_address_is_refused(monkeypatch):
    """A name answered with a public and a private address is refused, nothing connected."""
    _resolver({"mixed.test": [["93.184.216.34", "10.0.0.7"]]}, monkeypatch)
    reached: list[tuple[str, int]] = []
    with public_only(), pytest.raises(AddressNotPublic) as refused:
        connect(("mixed.test", 443), lambda a: reached.append(a) or socket.socket())
    assert (refused.value.host, refused.value.address) == ("mixed.test", "10.0.0.7")
    assert reached == []


def test_outside_public_only_nothing_is_checked(monkeypatch):
    """Without ``public_only`` (sso.idp_private_addresses on) the address is passed on
    as it came."""
    reached: list[tuple[str, int]] = []
    with public_only(False):
        connect(("localhost", 80), lambda a: reached.append(a) or socket.socket()).close()
    assert reached == [("localhost", 80)]
