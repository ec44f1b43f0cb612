"""The rate limit of SCIM OAuth access tokens, counted per OAuth client.

An OAuth client obtains access tokens at will (RFC 6749 §4.4, ``/oauth/token``). Counted
per token as directory tokens are (app/api/ratelimit.py), each new access token would
bring a fresh quota, so a client could multiply its limit by minting tokens. They count
together under their client instead. The client is known only once the token is
authenticated: the first request of a token in a process authenticates it here, before the
view (a short read; the view then reuses the caller), and the token's client is remembered
in bounded memory, so its later requests cost no extra statement. A token that was never
issued is a 401 before it is counted, and counts as a failed authentication.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from flask import Response, current_app

from app.api.ratelimit import count_as, request_limit, retry_after_counting
from app.bearer import digest_of, presented_bearer
from app.directory.oauth_clients import ACCESS_TOKEN_PREFIX
from app.scim.http import authenticated

# Access tokens whose client one process remembers (their SHA-256 digests, never the
# secret), oldest forgotten first: memory stays bounded whatever the number of tokens.
MAX_TOKENS = 10_000
_TABLES = "roster.oauth_token_clients"


class _TokenClients:
    """Access-token digest -> OAuth client id, bounded, shared by a process's threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clients: OrderedDict[str, str] = OrderedDict()

    def get(self, digest: str) -> str | None:
        with self.lock:
            return self.clients.get(digest)

    def remember(self, digest: str, client_id: str) -> None:
        with self.lock:
            self.clients[digest] = client_id
            while len(self.clients) > MAX_TOKENS:
                self.clients.popitem(last=False)


_create_lock = threading.Lock()


def _table() -> _TokenClients:
    extensions = current_app.extensions
    with _create_lock:
        table: _TokenClients = extensions.setdefault(_TABLES, _TokenClients())
    return table


def count_oauth_client() -> Response | None:
    """Before a SCIM view: count a request made with an OAuth access token under its
    client; the 429 (or the 401 of a token never issued) to answer, else None."""
    presented = presented_bearer()
    if presented is None or not presented.credential.startswith(ACCESS_TOKEN_PREFIX) \
            or request_limit("scim") is None:
        return None
    table = _table()
    client_id = table.get(presented.digest)
    if client_id is None:
        client_id = authenticated().token.client_id or presented.digest
        table.remember(presented.digest, client_id)
    return count_as("scim", client_identity(client_id))


def client_identity(client_id: str) -> str:
    """The name an OAuth client's requests count under."""
    # Under a name no credential's digest (64 hex digits, app/api/ratelimit.py) can take:
    # the digest of "oauth-client\x00<client_id>" was the key of any bearer credential
    # spelling that, so anyone knowing a client id could spend its quota, unauthenticated.
    return f"client-{digest_of(client_id)}"


def count_token_request(client_id: str) -> int | None:
    """Count a token request of an authenticated OAuth client (``/oauth/token``) against a
    quota of its own, as large as a SCIM credential's (``ratelimit.scim``); None when
    allowed, else the seconds until the window ends. Each issued token is a row written:
    unlimited, a client could write them at will."""
    # "client-token-..." is neither a digest nor "client-" and 64 hex digits.
    return retry_after_counting("scim", f"client-token-{digest_of(client_id)}")
