"""Structured JSON logs with a request id, and Prometheus metrics per route and status."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from app.ids import request_id as new_request_id
from app.json_output import dumps
from app.ops.log_buffer import BufferedStreamHandler
from app.ops.route_label import route_label
from app.ops.streamed import Ending, TrackedBody

REQUEST_ID_HEADER = "X-Request-ID"
# The methods a metrics label names (RFC 9110 §9.3 and PATCH, RFC 5789); any other token a
# client sends (gunicorn passes every upper-case one: "AAAB", "AAAC" ...) is "other". Each
# new label value was a new counter and histogram series (14 lines of /metrics, a cache entry
# and a file row per worker, kept until restart): unbounded, at a client's choice.
METRIC_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
                            "CONNECT", "TRACE"})
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,100}\Z")
# The request id of the request this thread serves under gunicorn, from before the app sees
# the request until gunicorn is done with it (app/ops/http_worker.py): gunicorn's own lines
# about it (its DEBUG "GET /path", "Closing connection.", "Error handling request") are
# written outside the app's context, and said request_id null.
_bound = threading.local()


def request_id_for(incoming: str | None) -> str:
    """A request's id: its ``X-Request-ID`` when well formed, else a new one."""
    return incoming if incoming and _REQUEST_ID_OK.match(incoming) else new_request_id()


def bind_request_id(request_id: str | None) -> None:
    """The id of the request this thread now serves (None: done with it)."""
    _bound.request_id = request_id


def bound_request_id() -> str | None:
    """The id :func:`bind_request_id` gave this thread, if any."""
    return getattr(_bound, "request_id", None)


# Anything that looks like a credential is masked before a log line is written.
_SECRET_PATTERNS = [
    # A PEM private key (RFC 7468 §10: PKCS #8, and the "RSA" / "EC" / "OPENSSH" variants),
    # whole: the signing or SP key handed over in the environment, as gunicorn's DEBUG dump
    # of its configuration quotes ``-e`` variables. First: the form pattern below would mask
    # only its first word.
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?:(?!-----END)[\s\S])*"
               r"(?:-----END [A-Z ]*PRIVATE KEY-----)?"),
    # An Authorization (or Proxy-Authorization) header's credentials after its scheme (RFC
    # 9110 §11.4; the schemes of IANA's registry and common vendor ones): HTTP Basic's
    # base64 user:password (RFC 7617), as gunicorn quotes a malformed header line.
    re.compile(r"(?i)(authorization[\"']?\s*[:=]?\s*[\"']?\s*(?:basic|bearer|digest|dpop|gnap"
               r"|hoba|mutual|negotiate|ntlm|oauth|privatetoken|scram-sha-\d+|vapid|token"
               r"|apikey|sharedkey|ssws|aws4-hmac-sha256)\s+)[^\"'\r\n]+"),
    # A Cookie or Set-Cookie header's name=value pairs (RFC 6265 §4): session cookies.
    re.compile(r"(?i)(cookie[\"']?\s*[:=]?\s*[\"']?\s*)[^\s=\"';]+=[^\"'\r\n]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    # Roster's own: SCIM tokens, API keys, IdP access tokens and client secrets, and the
    # portal's access and refresh tokens (authlib logs every issued token at DEBUG).
    re.compile(r"\b(?:rst|rk|rsa|rss|rat|rrt)_[A-Za-z0-9_-]+"),
    # A JWT (RFC 7519 §3: base64url of a JSON header, which starts '{"' = eyJ): ID tokens,
    # id_token_hint, logout tokens.
    re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*)?"),
    # JSON ("token": "x"), form (token=x) and Python repr ('token': 'x') spellings; a name
    # ending in secret_key or private_key too (ROSTER_APP__SECRET_KEY=..., as gunicorn's
    # DEBUG dump of its configuration quotes the variables it was given with -e).
    re.compile(r"(?i)([\"']?(?:password|secret(?:[_-]?key)?|token|authorization|api[_-]?key"
               r"|private[_-]?key)[\"']?\s*[:=]\s*[\"']?)[^\"',\s]+"),
]
# Every pattern above needs one of these (case-insensitively); most lines have none.
_SECRET_MARKERS = ("bearer", "rst_", "rk_", "rsa_", "rss_", "rat_", "rrt_", "eyj", "password",
                   "secret", "token", "authorization", "cookie", "apikey", "api_key", "api-key",
                   "private")
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}
# An extra field named like a credential ("client_secret", "id_token", "password") is masked
# whole when it holds text, whatever the text looks like.
_SECRET_FIELD = re.compile(r"(?i)password|secret|token|authorization|credential|api_?key")
# A URL's userinfo (RFC 3986 §3.2.1: "user:password@"), as in a webhook URL.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s\"']+@")
# The value of a credential-like query parameter (RFC 3986 §3.4) of a URL in the text: an
# OAuth code, a SAS or Logic Apps sig, an api_key (as app/events/endpoints.py masks them).
_QUERY_SECRET = re.compile(
    r"(?i)([?&][^=&#\s\"']*(?:token|secret|sig|key|pass|pwd|auth|code|credential|session"
    r"|hash|jwt|bearer)[^=&#\s\"']*=)"
    # Not a value already masked (a webhook key's "***"); a ':' or ',' after it is the text's.
    r"(?!\*\*\*(?:[&#\s\"':,;.)]|$))[^&#\s\"']*[^&#\s\"':,;.)]")


# PostgreSQL's DETAIL line of an error quotes the row or key it is about ("Failing row contains
# (...)", "Key (user_name)=(...) already exists"): personal data, token digests. SQLAlchemy's
# hide_parameters (app/engine.py) keeps the statement's values out, not this line's.
_ROW_DETAIL = re.compile(r"(?m)^(DETAIL:\s*).*$")


def redact(text: str) -> str:
    """Mask bearer tokens, Roster tokens, password-like fields and credential-like query
    values in a log message, and the values a database error's DETAIL line quotes."""
    if "DETAIL:" in text:
        text = _ROW_DETAIL.sub(r"\1[values not logged]", text)
    if "@" in text and "://" in text:
        text = _USERINFO.sub(r"\1[REDACTED]@", text)
    if "=" in text and ("?" in text or "&" in text):
        text = _QUERY_SECRET.sub(r"\1[REDACTED]", text)
    lowered = text.lower()
    if not any(marker in lowered for marker in _SECRET_MARKERS):
        return text  # the access log line of every request: three regex passes saved
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "[REDACTED]", text)
    return text


def redact_field(name: str, value: Any) -> Any:
    """An extra field of a log record with secrets masked: its text through :func:`redact`,
    nested dicts and lists too, and the whole text of a field named like a credential."""
    if isinstance(value, str):
        return "[REDACTED]" if value and _SECRET_FIELD.search(name) else redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {k: redact_field(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_field(name, v) for v in value]
    # Any other object is written as its str() (json.dumps default=str): mask that text.
    return redact_field(name, str(value))


def extras(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record carries beyond the standard ones (``extra=``), secrets masked."""
    return {key: redact_field(key, value) for key, value in vars(record).items()
            if key not in _RESERVED and not key.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and extras."""

    _second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a single JSON line with secrets masked."""
        out: dict[str, Any] = {
            "ts": self.stamp(int(record.created), int(record.msecs)),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        out.update(extras(record))
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str)

    def stamp(self, second: int, msecs: int) -> str:
        """``2026-12-04T22:13:20.123Z``: a record's UTC time to the millisecond."""
        return f"{self._timestamp(second)}.{msecs:03d}Z"

    def _timestamp(self, second: int) -> str:
        # Lines come many per second: format each second once (a tuple swap, thread-safe).
        cached = self._second
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._second = cached
        return cached[1]


class TextFormatter(logging.Formatter):
    """The ``text`` log format, with secrets masked as in the JSON lines."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` with the text format, then mask what ``redact`` masks; extra
        fields the format names are masked first, as in the JSON lines."""
        fields = extras(record)
        if any(fields[key] is not value for key, value in vars(record).items()
               if key in fields):
            record = logging.makeLogRecord({**vars(record), **fields})
        return redact(super().format(record))


class RequestIdFilter(logging.Filter):
    """Attach the current request id (if any) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add ``request_id`` from flask.g when inside a request."""
        if not hasattr(record, "request_id"):
            try:
                record.request_id = g.get("request_id")
            except RuntimeError:  # outside the app: gunicorn's lines about a request
                record.request_id = getattr(_bound, "request_id", None)
        return True


def configure_logging(level: str, fmt: str, flush_ms: int = 0) -> None:
    """Install the JSON (or text) handler on the root logger, once per process.

    ``flush_ms`` > 0 buffers lines and writes them that often (``[logging] flush_ms``).
    """
    root = logging.getLogger()
    root.setLevel(level)
    # No caller lookup per record (a walk up the stack on every access line): neither the
    # JSON lines nor the text format show a file, line or function (logging HOWTO,
    # "Optimization").
    logging._srcfile = None  # type: ignore[attr-defined]
    for handler in list(root.handlers):
        if getattr(handler, "_roster", False):
            root.removeHandler(handler)
            handler.close()
    handler = (BufferedStreamHandler(sys.stderr, flush_ms) if flush_ms > 0
               else logging.StreamHandler(sys.stderr))
    handler._roster = True  # type: ignore[attr-defined]
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonFormatter() if fmt == "json"
        else TextFormatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    )
    root.addHandler(handler)


class Metrics:
    """Request counters and latency histograms; gunicorn workers share them via a directory."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("roster_http_requests_total", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram(
            "roster_http_request_duration_seconds", "HTTP request latency",
            ["method", "route"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        # app/sso/fault_traces.py: refusals shown an earlier trace's correlation id; the
        # reasons are a fixed set of five.
        self.untraced_sso_refusals = Counter(
            "roster_sso_refusals_untraced_total",
            "SSO refusals the client did not cause, not traced (an earlier trace of the same "
            "connection and reason stands for them)", ["reason"], registry=self.registry)
        # (method, route, status) -> its counter and histogram children: labels() validates
        # and locks on every call; the routes, methods and statuses are few.
        self._children: dict[tuple[str, str, int | str], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int | str, seconds: float) -> None:
        """Count one request and its latency (a method outside ``METRIC_METHODS`` as
        ``other``; a streamed body that failed after its status was sent as ``aborted``, one
        whose client went away before its end as ``disconnected``)."""
        if method not in METRIC_METHODS:
            method = "other"
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(method, route, str(status)),
                                               self.latency.labels(method, route))
        children[0].inc()
        children[1].observe(seconds)

    def untraced_sso_refusal(self, reason: str) -> None:
        """Count one SSO refusal left untraced (app/sso/fault_traces.py)."""
        self.untraced_sso_refusals.labels(reason).inc()

    def render(self) -> Response:
        """The exposition text; merges all workers when PROMETHEUS_MULTIPROC_DIR is set."""
        registry = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        # content_type, not mimetype: Werkzeug adds a charset to a text/ mimetype, and the
        # exposition type has its own (a parameter twice fails Prometheus' scrape).
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


class AccessLog:
    """The one access line per request, on the ``roster.access`` logger.

    When that line would reach nothing but Roster's own buffered JSON handler (the server's
    configuration: no other handler or filter on the way, INFO enabled), it is formatted
    here and handed to that handler directly, exactly as ``JsonFormatter`` would write it.
    The logging machinery (a ``LogRecord`` of some thirty fields, the filter, the walk over
    the record's attributes) cost ~4 % of a SCIM lookup's instructions inside the app, the
    direct line half of that (bench/README.md, session 8). Any other
    configuration (a text format, an unbuffered handler, a test capturing records) takes
    the ordinary ``Logger.info`` path.
    """

    def __init__(self) -> None:
        self.logger = logging.getLogger("roster.access")
        # The loggers a record passes on its way to the root handler (Logger.callHandlers).
        self._chain: list[logging.Logger] = []
        logger: logging.Logger | None = self.logger
        while logger is not None and not isinstance(logger, logging.RootLogger):
            self._chain.append(logger)
            logger = logger.parent if logger.propagate else None

    def write(self, method: str, route: str, status: int, duration_ms: float,
              request_id: str | None, *, ending: Ending = "whole") -> None:
        """Log ``METHOD route status`` with its fields and the request id; a streamed body
        that failed after its status was sent: ``... 200 aborted``, ``"aborted": true`` (a
        WARNING); one whose client went away before its end: ``... 200 disconnected``,
        ``"disconnected": true``."""
        if ending != "whole":
            level = logging.WARNING if ending == "aborted" else logging.INFO
            self.logger.log(level, "%s %s %s %s", method, route, status, ending, extra={
                "method": method, "route": route, "status": status,
                "duration_ms": duration_ms, ending: True, "request_id": request_id})
            return
        handler = self._direct_handler()
        if handler is None:
            self.logger.info("%s %s %s", method, route, status,
                             extra={"method": method, "route": route, "status": status,
                                    "duration_ms": duration_ms})
            return
        now = time.time()
        formatter: JsonFormatter = handler.formatter  # type: ignore[assignment]
        line = dumps({
            # Seconds and milliseconds as a LogRecord takes them from time.time().
            "ts": formatter.stamp(int(now), int((now - int(now)) * 1000)),
            "level": "INFO", "logger": self.logger.name,
            "msg": redact(f"{method} {route} {status}"), "method": method, "route": route,
            "status": status, "duration_ms": duration_ms,
            "request_id": redact(request_id) if request_id else request_id,
        }).decode()  # plain strings and numbers: orjson's fast path (app/json_output.py)
        handler.append(line + handler.terminator)

    def _direct_handler(self) -> BufferedStreamHandler | None:
        if not self.logger.isEnabledFor(logging.INFO):
            return None
        for logger in self._chain:
            if logger.handlers or logger.filters or not logger.propagate:
                return None
        handlers = logging.root.handlers
        if len(handlers) != 1 or logging.root.filters:
            return None
        handler = handlers[0]
        if (type(handler) is not BufferedStreamHandler or handler.level > logging.INFO
                or type(handler.formatter) is not JsonFormatter
                or len(handler.filters) != 1 or type(handler.filters[0]) is not RequestIdFilter):
            return None
        return handler


def init_request_tracking(app: Flask, metrics: Metrics) -> None:
    """Request id in and out, a metrics sample and one access log line per request."""
    access = AccessLog()

    @app.before_request
    def _start() -> None:
        # Wall-clock arrival, first thing: deprovisioning latency is measured from it (issue 7).
        ctx = g._get_current_object()  # type: ignore[attr-defined]
        ctx.received_at = datetime.now(UTC)
        # gunicorn's worker chose it already (its own lines carry it), else as it would.
        ctx.request_id = bound_request_id() or request_id_for(
            request.headers.get(REQUEST_ID_HEADER))
        ctx.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        # The request and g once each: every access through Flask's proxies costs a lookup.
        req, ctx = request._get_current_object(), g._get_current_object()  # type: ignore[attr-defined]
        response.headers[REQUEST_ID_HEADER] = ctx.get("request_id", "")
        route = route_label(app, req)
        elapsed = time.perf_counter() - ctx.get("started", time.perf_counter())
        method, status = req.method, response.status_code
        request_id = ctx.get("request_id")
        if response.is_streamed and not response.direct_passthrough:
            # Its body is read after this (the audit export): counted and logged when it ends,
            # as "aborted" if it fails, "disconnected" if the client leaves (app/ops/streamed.py).
            started = ctx.get("started", time.perf_counter())

            def record(ending: Ending) -> None:
                seconds = time.perf_counter() - started
                metrics.observe(method, route, status if ending == "whole" else ending, seconds)
                access.write(method, route, status, round(seconds * 1000, 2), request_id,
                             ending=ending)

            response.response = TrackedBody(response.response, record, request_id, route)
            return response
        metrics.observe(method, route, status, elapsed)
        access.write(method, route, status, round(elapsed * 1000, 2), request_id)
        return response
