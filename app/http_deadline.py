"""An HTTP exchange that ends within a deadline, whatever the peer does (urllib, requests).

``urllib``'s timeout bounds each socket operation, not the exchange: a peer that sends its
answer a byte every few seconds holds the caller for as long as it likes (a webhook
receiver held the worker for over a minute with a 5 s timeout; an IdP's metadata URL could
hold an API request). Under :func:`within`, every socket an opener of :func:`cuttable_opener`
connects in this thread is remembered, and when the deadline passes they are shut down:
the exchange fails at once, and the caller sees ``cut.is_set()``. ``urllib`` stays (it
honours the ``https_proxy`` settings a deployment's egress may need).

``requests`` (the OIDC relying party's discovery and JWKS downloads, authlib's code
exchange) has the same per-read timeout: a session of :func:`cuttable_session` puts its
connections under :func:`within` the same way.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from app.public_address import active, check_host, connect

# The sockets the current thread's exchange opened, for its deadline to shut down.
_opened = threading.local()


def _remember(sock: socket.socket) -> None:
    """Put ``sock`` under this thread's deadline (shut at once if it passed already)."""
    box, cut = getattr(_opened, "box", None), getattr(_opened, "cut", None)
    if box is not None:
        box.append(sock)
    if cut is not None and cut.is_set():  # the deadline passed while connecting
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _created(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
    """``socket.create_connection``, remembering the socket for the deadline before
    anything is sent on it: a proxy's CONNECT and the TLS handshake are under the deadline
    too (shutting the TCP socket ends both). Name resolution is not: it cannot be cut."""
    sock = socket.create_connection(address, *args, **kwargs)
    _remember(sock)
    return sock


def _guarded(conn: http.client.HTTPConnection) -> Any:
    """``conn``'s way to connect: :func:`_created`, to a checked public address under
    ``public_only`` (through a proxy: to the proxy, its tunnel's target checked by name)."""
    def create(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        tunnel = getattr(conn, "_tunnel_host", None)
        if not active() or tunnel:
            if tunnel:
                check_host(tunnel, getattr(conn, "_tunnel_port", None) or 443)
            return _created(address, *args, **kwargs)
        return connect(address, lambda checked: _created(checked, *args, **kwargs))
    return create


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _guarded(self)


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _guarded(self)

    def connect(self) -> None:
        """Connect, then put the TLS socket under the deadline too: wrapping detaches the
        TCP socket object remembered at connect (its descriptor moves to the TLS one), so
        shutting that one down after the handshake did nothing, and an https peer
        trickling its answer was never cut."""
        super().connect()
        _remember(self.sock)


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: Any) -> Any:
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: Any) -> Any:
        extra = ({"check_hostname": self._check_hostname}
                 if getattr(self, "_check_hostname", None) is not None else {})
        return self.do_open(_HTTPSConnection, req, context=self._context, **extra)


def cuttable_opener(*handlers: urllib.request.BaseHandler,
                 context: ssl.SSLContext | None = None) -> urllib.request.OpenerDirector:
    """urllib's opener whose connections :func:`within` can cut (https verified with
    ``context``, default the system's trust), plus ``handlers``; it reads the proxy settings
    (``https_proxy`` ...) of the environment when built."""
    return urllib.request.build_opener(_HTTPHandler(), _HTTPSHandler(context=context),
                                       *handlers)


def _urllib3_socket(conn: urllib3.connection.HTTPConnection) -> socket.socket:
    """A socket for ``conn`` under ``public_only``: to a checked public address, with
    urllib3's own errors for what fails (as its ``_new_conn``)."""
    if conn._tunnel_host:  # a proxy: the operator's; the tunnel's target checked by name
        check_host(conn._tunnel_host, conn._tunnel_port or 443)
        return urllib3.connection.HTTPConnection._new_conn(conn)

    def create(address: tuple[str, int]) -> socket.socket:
        return urllib3.util.connection.create_connection(
            address, conn.timeout, source_address=conn.source_address,
            socket_options=conn.socket_options)
    try:
        return connect((conn._dns_host, conn.port), create)
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    except TimeoutError as exc:
        raise ConnectTimeoutError(conn, f"Connection to {conn.host} timed out. "
                                  f"(connect timeout={conn.timeout})") from exc
    except OSError as exc:
        raise NewConnectionError(conn, f"Failed to establish a new connection: {exc}") \
            from exc


class _Urllib3Connection(urllib3.connection.HTTPConnection):
    def connect(self) -> None:
        """Connect (through a proxy, if any), the socket under this thread's deadline."""
        super().connect()
        _remember(self.sock)

    def _new_conn(self) -> socket.socket:
        sock = _urllib3_socket(self) if active() else super()._new_conn()
        _remember(sock)  # a proxy's CONNECT is under the deadline too
        return sock


class _Urllib3TLSConnection(urllib3.connection.HTTPSConnection):
    def connect(self) -> None:
        """Connect and shake hands; the TLS socket under this thread's deadline (wrapping
        detached the TCP socket object remembered at connect, as in :class:`_HTTPSConnection`)."""
        super().connect()
        _remember(self.sock)

    def _new_conn(self) -> socket.socket:
        sock = _urllib3_socket(self) if active() else super()._new_conn()
        _remember(sock)
        return sock


class _Pool(urllib3.HTTPConnectionPool):
    ConnectionCls = _Urllib3Connection


class _TLSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _Urllib3TLSConnection  # type: ignore[assignment]


_POOLS = {"http": _Pool, "https": _TLSPool}


class _CuttableAdapter(HTTPAdapter):
    """requests' adapter whose connections (direct or through an http proxy) :func:`within`
    can cut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if isinstance(manager, urllib3.ProxyManager):
            manager.pool_classes_by_scheme = _POOLS
        return manager


def cuttable_session(session: requests.Session | None = None) -> requests.Session:
    """``session`` (default a new one) with every ``http://`` and ``https://`` connection
    it opens in this thread under :func:`within`; close it when done (a pooled connection
    kept for a later block would not be under that block's deadline)."""
    session = session if session is not None else requests.Session()
    adapter = _CuttableAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _shut(box: list[socket.socket], cut: threading.Event) -> None:
    cut.set()
    for sock in box:
        with contextlib.suppress(OSError):  # already closed: the exchange ended meanwhile
            sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def within(seconds: float) -> Iterator[threading.Event]:
    """Shut down, after ``seconds``, every connection an opener of :func:`cuttable_opener`
    makes in this thread in the block; the event yielded is set when that happened (the
    exchange then failed or ended early: report it as late, not as whatever broke)."""
    box: list[socket.socket] = []
    cut = threading.Event()
    timer = threading.Timer(seconds, _shut, (box, cut))
    timer.daemon = True
    _opened.box, _opened.cut = box, cut
    timer.start()
    try:
        yield cut
    finally:
        timer.cancel()
        _opened.box = _opened.cut = None
