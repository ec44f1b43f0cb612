"""Roster: the identity edge of a B2B purchasing portal.

``create_app`` is the only way the application is built (gunicorn runs ``app:create_app()``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from html import escape
from types import FunctionType
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.wsgi import LimitedStream

from app.db import Database
from app.form_input import BoundedFormRequest
from app.lifecycle import policy as lifecycle_policy
from app.mapping.locks import configure_write_wait
from app.mapping.unit_plan import configure_unit_cap
from app.observability import Metrics, configure_logging, init_request_tracking
from app.scim.errors import ScimError
from app.scim.errors import error_response as scim_error_response
from app.settings import load_settings
from app.sso import pages as sso_pages
from app.sso.views import OAUTH_JSON_PATHS, SSO_JSON_PATHS
from app.sso.views import unexpected_error as sso_unexpected_error

log = logging.getLogger("roster")
# A refused body up to this many times app.max_body_bytes is read to its end.
DRAIN_BODIES = 4


class RosterFlask(Flask):
    """Flask, with each function's sync-or-async kind decided once.

    Flask's ``ensure_sync`` (its documented override point for running views) asks
    ``inspect.iscoroutinefunction`` about every before- and after-request function and the
    view on every request: six times per SCIM request, ~1 % of a lookup. A plain function's
    kind never changes, so the answer is kept per function (bound methods, partials and
    other callables are still asked each time).
    """

    def __init__(self, import_name: str) -> None:
        super().__init__(import_name)
        self._sync: dict[FunctionType, Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """``Flask.ensure_sync``, remembered for plain functions."""
        if type(func) is not FunctionType:
            return super().ensure_sync(func)
        known = self._sync.get(func)
        if known is None:
            known = self._sync[func] = super().ensure_sync(func)
        return known

    # A form body past app.max_body_bytes is a 413 also when chunked, and a compressed one a
    # 415, not a form cut at the limit or read as garbage (app/form_input.py).
    request_class = BoundedFormRequest


def create_app(overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Flask:
    """Build the app: settings, database, logging, metrics, blueprints, error handlers."""
    settings = load_settings(overrides)
    configure_logging(settings["logging"]["level"], settings["logging"]["format"],
                      settings["logging"]["flush_ms"])
    app = RosterFlask(__name__)
    # Werkzeug answers a path with "//" by an HTML 308 to the merged path; SCIM clients are
    # to get SCIM errors only, so such a path is simply unknown (a SCIM or API 404).
    app.url_map.merge_slashes = False
    app.config["ROSTER"] = settings
    app.config["SECRET_KEY"] = settings["app"]["secret_key"] or None
    # Sessions signed before a rotation of secret_key stay valid (Flask 3.1).
    app.config["SECRET_KEY_FALLBACKS"] = [k for k in [settings["app"]["previous_secret_key"]]
                                          if k]
    # The session cookie signs a browser in at the OP (its login binds codes for the portal):
    # served over https, it must never travel over plain http (RFC 6265 §4.1.2.5).
    app.config["SESSION_COOKIE_SECURE"] = settings["app"]["base_url"].startswith("https://")
    app.config["MAX_CONTENT_LENGTH"] = settings["app"]["max_body_bytes"]
    # No automatic OPTIONS answer (an empty text/html 200 that ran no check and appeared in
    # no OpenAPI document): Roster serves no CORS, so OPTIONS is a 405 with Allow in each
    # protocol's error format, as SCIM always answered it (RFC 9110 §15.5.6).
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    db = Database.from_settings(settings["database"])
    metrics = Metrics()
    app.extensions["roster.db"] = db
    # Lifecycle settings reach the domain as a value bound to this app's database (issue 7).
    lifecycle_policy.configure(lifecycle_policy.LifecyclePolicy.from_settings(settings),
                               db.engine)
    configure_write_wait(db.engine, settings["mapping"]["write_wait_ms"])
    configure_unit_cap(db.engine, settings["mapping"]["max_units"])
    app.extensions["roster.metrics"] = metrics
    init_request_tracking(app, metrics)
    app.after_request(_drain_refused_body)
    app.before_request(_options_asterisk)
    _register_blueprints(app)
    _init_scim_ops(app)
    _register_error_handlers(app)
    from app.api.setup import init_api

    init_api(app)  # /api/v1 routing errors as problem JSON, rate limits (issue 3)
    _trust_proxies(app, settings["app"]["trusted_proxies"])
    return app


def _drain_refused_body(response: Response) -> Response:
    """Read the rest of a body an error answered without reading (a 413, 415 or 401 on a
    large POST), so the connection can carry the client's next request. gunicorn drains at
    most 64 KiB itself and then closes the connection it has just called keep-alive, and the
    IdP's next request fails with a network error. Past ``DRAIN_BODIES`` times the body
    limit the connection is not worth it: gunicorn closes it."""
    if response.status_code < 400:
        return response
    length = request.content_length
    if length and length <= DRAIN_BODIES * current_app.config["ROSTER"]["app"]["max_body_bytes"]:
        # The stream the view read from (it knows how much is left), else a fresh one over
        # wsgi.input: request.stream itself refuses a body over the limit.
        stream = request.__dict__.get("stream") or LimitedStream(
            request.environ["wsgi.input"], length)
        # The client went away or stalled: the answer stands (gunicorn closes the connection).
        with contextlib.suppress(Exception):
            while stream.read(65536):
                pass
    return response


def _options_asterisk() -> Response | None:
    """``OPTIONS *`` asks about the server in general, not a resource (RFC 9110 §9.3.7): 200
    with the methods some resource here allows and no content (Content-Length 0). gunicorn
    hands the asterisk-form target over as the path ``*``, which no route matches (it was
    the app's generic 404); an origin-form path always starts with ``/``."""
    if request.method != "OPTIONS" or request.environ.get("PATH_INFO") != "*":
        return None
    methods = {m for rule in current_app.url_map.iter_rules() for m in rule.methods or ()}
    order = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
    response = Response(status=200)
    response.headers["Allow"] = ", ".join([m for m in order if m in methods] + ["OPTIONS"])
    response.headers["Content-Length"] = "0"
    return response


def _trust_proxies(app: Flask, hops: int) -> None:
    """Behind ``hops`` reverse proxies, take scheme, host, port, prefix and client IP from
    their X-Forwarded-* headers (werkzeug ProxyFix); with 0 the headers are ignored."""
    if hops > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops,  # type: ignore[method-assign]
                                x_host=hops, x_port=hops, x_prefix=hops)


def _register_blueprints(app: Flask) -> None:
    from app.api.views import bp as api_bp
    from app.ops.views import bp as ops_bp
    from app.scim.views import bp as scim_bp
    from app.sso import oidc_views  # noqa: F401  OIDC RP routes on the /sso blueprint
    from app.sso.views import bp as sso_bp

    for blueprint in (ops_bp, scim_bp, api_bp, sso_bp):
        app.register_blueprint(blueprint)


def _init_scim_ops(app: Flask) -> None:
    """The SCIM flight recorder and the OAuth token endpoint for IdPs (issue 5)."""
    from app.scim.oauth import init_oauth
    from app.scim.recorder import init_recorder

    init_recorder(app)
    init_oauth(app)


def _scim_method_not_allowed(app: Flask) -> Response | None:
    """A method Flask routes nowhere (TRACE, PROPFIND) on a SCIM endpoint: the endpoint's
    own SCIM 405, with the ``Allow`` of the methods it serves (RFC 9110 §15.5.6)."""
    if not request.path.startswith("/scim/v2/"):
        return None
    try:
        endpoint, values = app.url_map.bind_to_environ(request.environ).match(method="GET")
    except HTTPException:
        return None
    if not endpoint.startswith("scim."):
        return None  # only SCIM's views answer an unsupported method without running
    try:
        response: Response = app.view_functions[endpoint](**values)
    except ScimError as exc:  # the catch-all of unknown paths: its SCIM 404
        return scim_error_response(exc.status, exc.detail, exc.scim_type)
    return response


def _oauth_http_error(code: int, description: str) -> Response:
    """An HTTP error raised before an OAuth endpoint ran (a method it does not serve, an
    unknown path under its prefix, a body past ``app.max_body_bytes``), in OAuth's error
    format (RFC 6749 §5.2: ``invalid_request``, the request is malformed; none of these has
    a code of its own; a 5xx is ``server_error``, §4.1.2.1), with ``Cache-Control:
    no-store`` as the endpoint's other errors (authlib's), not the app's generic JSON a
    client's OAuth library cannot read. The status is the HTTP error's; the caller adds
    ``Allow`` to a 405."""
    response = jsonify(error="invalid_request" if code < 500 else "server_error",
                       error_description=description, request_id=g.get("request_id"))
    response.status_code = code
    response.headers["Cache-Control"] = "no-store"
    return response


def _oauth_description(exc: HTTPException, allow: str | None) -> str:
    code = exc.code or 500
    if code == 405:
        return f"{request.method} is not allowed here; allowed: {allow or '-'}"
    if code == 404:
        # RFC 6749 §5.2 keeps error_description to printable ASCII without '"' and '\\'.
        path = "".join(c if " " <= c <= "~" and c not in '"\\' else "?"
                       for c in request.path[:200])
        return f"no OAuth endpoint at {path}"
    if code == 413:
        return "the request body is too large"
    return exc.description or exc.name


def _register_error_handlers(app: Flask) -> None:
    """Fallback handlers for routes outside a blueprint with its own error format."""

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        code = exc.code or 500
        if code == 405 and (scim := _scim_method_not_allowed(app)) is not None:
            return scim, scim.status_code
        if request.path == "/scim/v2" or request.path.startswith("/scim/v2/"):
            # A path no rule matches at all (/scim/v2//Users): still a SCIM error.
            detail = (f"no SCIM endpoint at {request.path}" if code == 404
                      else exc.description or exc.name)
            return scim_error_response(code, detail), code
        # A 405 names the methods the resource has (RFC 9110 §15.5.6), in every format.
        allow = dict(exc.get_headers()).get("Allow")
        if request.path.startswith(OAUTH_JSON_PATHS):
            response = _oauth_http_error(code, _oauth_description(exc, allow))
        elif request.path.startswith("/sso/") and not request.path.startswith(SSO_JSON_PATHS):
            # A browser's page (a 2 MB SAMLResponse, a GET on the ACS, an unknown /sso
            # path): a plain page, like every other sign-in failure, not JSON.
            response = sso_pages.page(exc.name,
                                      f"<p>{escape(exc.description or exc.name)}</p>", code)
        else:
            response = jsonify(error=exc.name, detail=exc.description,
                               request_id=g.get("request_id"))
        if allow:
            response.headers["Allow"] = allow
        return response, code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        if request.path.startswith("/sso/"):  # a browser's page, or the provider's JSON
            return sso_unexpected_error(g.get("request_id")), 500
        return jsonify(error="Internal Server Error",
                       detail="an unexpected error occurred; quote the request id",
                       request_id=g.get("request_id")), 500
