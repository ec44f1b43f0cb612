"""The directory of each bearer token a process has seen lately, for the flight recorder.

A SCIM request refused with 429 by a rate limit never reaches the view, so its caller is
not authenticated; recording it for the token's directory used to cost a token lookup per
refused request (app/scim/recorder.py), the very work the limit was to spare. The directory
of a token is remembered once known (from an authenticated request, or from one lookup),
by the token's SHA-256 digest, never the secret; a lookup that found no directory is
remembered too. Bounded: the oldest entries are forgotten first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

# Tokens one process remembers at most: memory stays bounded whatever the tokens sent.
MAX_TOKENS = 10_000
UNKNOWN = object()


class KnownCallers:
    """Token digest -> directory id (None: no directory has it), bounded, thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.directories: OrderedDict[str, str | None] = OrderedDict()

    def get(self, digest: str) -> str | object | None:
        """The directory remembered for the token, else ``UNKNOWN``."""
        return self.directories.get(digest, UNKNOWN)

    def remember(self, digest: str, directory_id: str | None) -> None:
        """Remember the token's directory (or that it has none)."""
        if self.directories.get(digest, UNKNOWN) == directory_id:
            return  # the common case: a dict read, no lock
        with self.lock:
            self.directories[digest] = directory_id
            self.directories.move_to_end(digest)
            while len(self.directories) > MAX_TOKENS:
                self.directories.popitem(last=False)
