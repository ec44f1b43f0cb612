"""Rate limits per API key and per SCIM token (filled in below)."""

from __future__ import annotations

from flask import Flask


def init_rate_limits(app: Flask) -> None:
    """Install the per-credential limits on the API and SCIM blueprints."""
