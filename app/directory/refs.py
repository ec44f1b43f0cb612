"""Plain-value handles on a directory and a bearer token, for the per-request hot path.

Every SCIM request authenticates; loading the token and directory as ORM objects cost more
than the rest of a lookup. These frozen values are read with one Core query instead, and
the services that create users and groups need nothing more of the directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol


class DirectoryLike(Protocol):
    """What user and group services need of a directory: either the ORM row or a ref."""

    @property
    def id(self) -> str:
        """The directory id."""
        ...

    @property
    def organization_id(self) -> str:
        """The organization that owns the directory."""
        ...


@dataclass(frozen=True, slots=True)
class DirectoryRef:
    """An active directory, as the values a request needs."""

    id: str
    organization_id: str


@dataclass(frozen=True, slots=True)
class TokenRef:
    """The credential that authenticated a request.

    ``touch_at`` is set when the token's ``last_used_at`` is older than its resolution and
    should be stamped with that time (see ``tokens.touch``); OAuth access tokens have none,
    and carry the ``client_id`` of the OAuth client they were issued to instead.
    """

    id: str
    kind: Literal["directory_token", "access_token"]
    touch_at: datetime | None = None
    client_id: str | None = None
