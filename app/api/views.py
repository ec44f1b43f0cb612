"""The /api/v1 blueprint. Routes are added by modules of this package."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")
