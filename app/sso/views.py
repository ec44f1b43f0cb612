"""The /sso blueprint. Routes are added by modules of this package."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("sso", __name__, url_prefix="/sso")
