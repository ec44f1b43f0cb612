"""Wire the API into an app: problem JSON for routing errors under /api/v1, rate limits
(per credential, and on failed authentications per client address), the former signing
keys read once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, request
from werkzeug.exceptions import HTTPException

from app.api.authlimit import init_failed_auth_limit
from app.api.errors import http_problem
from app.api.ratelimit import init_rate_limits
from app.audit.signing import former_public_keys

API_PREFIX = "/api/v1"
# app.extensions: the former signing keys' public keys (signing.former_public_key_files).
FORMER_KEYS = "roster.former_signing_keys"


def init_api(app: Flask) -> None:
    """Call once from create_app, after the app-wide error handlers are registered."""
    fallback: Callable[[HTTPException], Any] | None = \
        app.error_handler_spec[None][None].get(HTTPException)

    # A URL that matches no rule (404) or no method (405) never reaches the blueprint's
    # handlers, so the app answers those under /api/v1 with problem JSON too.
    def _routing_error(exc: HTTPException) -> Any:
        if request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/"):
            return http_problem(exc)
        return fallback(exc) if fallback else exc

    for code in (404, 405):
        app.register_error_handler(code, _routing_error)
    # Read once, here: the files were checked by load_settings just before (a bad one refuses
    # the start), and a request never reads them (nor fails on one changed since).
    app.extensions[FORMER_KEYS] = former_public_keys(app.config["ROSTER"])
    # First: a blocked address's made-up credentials never reach the per-credential counters.
    init_failed_auth_limit(app)
    init_rate_limits(app)
