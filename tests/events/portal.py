"""The portal's side of the pull feed, for tests: read ``GET /api/v1/events`` with a portal
key from where the last read stopped, as a consumer does."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask.testing import FlaskClient

from app.db import Database
from app.models import Organization
from tests.api.conftest import make_key


@dataclass
class PortalFeed:
    """A portal key and the last ``next_cursor`` it was given."""

    client: FlaskClient
    headers: dict[str, str]
    cursor: str | None = None
    seen: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, client: FlaskClient, db: Database, org: Organization) -> PortalFeed:
        """A feed reader with a new portal key of ``org``, at the start of the feed."""
        return cls(client, make_key(db, "portal", org).headers)

    def new(self) -> list[dict[str, Any]]:
        """Every event since the last call, oldest first (pages through to the end)."""
        out: list[dict[str, Any]] = []
        while True:
            query = "limit=200" + (f"&after={self.cursor}" if self.cursor else "")
            response = self.client.get(f"/api/v1/events?{query}", headers=self.headers)
            assert response.status_code == 200, response.get_json()
            page = response.get_json()
            self.cursor = page["next_cursor"]
            if not page["items"]:
                self.seen.extend(out)
                return out
            out.extend(page["items"])

    def skip(self) -> None:
        """Move past everything written so far."""
        self.new()


def brief(events: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    """(type, aggregate_id) of each event, in feed order."""
    return [(e["type"], e["aggregate_id"]) for e in events]
