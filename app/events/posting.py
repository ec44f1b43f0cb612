"""Sending one webhook: a POST that follows no redirect and ends within its timeout.

``urllib``'s timeout bounds each socket operation, not the request: a receiver that sent its
answer a byte every two seconds held the worker (and every other endpoint's deliveries) for
over a minute with ``timeout_seconds = 5``. Each POST here has a deadline
(app/http_deadline.py): when it passes, the connection is shut down and the POST is a
failure to retry.
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any, NamedTuple

from app.events.delivery import Claimed, WebhookConfig
from app.events.endpoints import request_target, scrub
from app.events.signature import EVENT_ID_HEADER, IDEMPOTENCY_HEADER, SIGNATURE_HEADER, sign
from app.http_deadline import cuttable_opener, within


class Posted(NamedTuple):
    """One POST's outcome: 2xx or not, the HTTP status, the error, and the seconds the
    receiver asked to wait before the next try (its ``Retry-After``), if it said."""

    ok: bool
    status: int | None
    error: str | None
    retry_after: float | None = None


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` value (RFC 9110 §10.2.3: delay-seconds, or an HTTP-date) in
    seconds from now; None when absent or unreadable."""
    value = (value or "").strip()
    if value.isascii() and value.isdigit():
        return float(int(value)) if len(value) <= 12 else 1e12
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT (RFC 9110 §5.6.7); -0000 parses naive
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer like any other: urllib turned a POST answered 301, 302 or 303
    into a GET without the event, sent it (signed) wherever the Location said (an internal
    address as well) and counted its 200 as delivered."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        """Follow nothing: the 3xx reaches the caller as an HTTPError."""
        return None


def build_opener() -> urllib.request.OpenerDirector:
    """The webhook opener: cut at its POST's deadline, following no redirect; it reads the
    proxy settings (``https_proxy`` ...) of the environment when built."""
    return cuttable_opener(_NoRedirects())


_OPENER = build_opener()


def post_event(item: Claimed, config: WebhookConfig) -> Posted:
    """POST one event; 2xx is success, anything else (a redirect too, which is not followed,
    no answer, or none within ``timeout_seconds`` in all) is a failure to retry (not before
    the answer's ``Retry-After``, a 429's or a 503's)."""
    body = json.dumps(item.event, sort_keys=True, separators=(",", ":")).encode()
    # Endpoints are checked to be http(s) when the settings are read (WebhookConfig).
    headers = {
        "Content-Type": "application/json", "User-Agent": "Roster-Webhooks/1",
        SIGNATURE_HEADER: sign(config.secret, int(time.time()), body,
                               config.previous_secret),
        EVENT_ID_HEADER: item.event["id"], IDEMPOTENCY_HEADER: item.event["id"],
        "Roster-Event-Type": item.event["type"],
        "Roster-Delivery-Attempt": str(item.attempts + 1)}
    # The delivery names its endpoint by key (credentials masked); the settings hold the
    # URL, whose userinfo goes as Basic authentication (RFC 7617), not as part of the host.
    configured = config.target(item.endpoint)
    url, authorization = request_target(configured)
    if authorization:
        headers["Authorization"] = authorization
    request = urllib.request.Request(url, data=body, method="POST",  # noqa: S310
                                     headers=headers)
    with within(config.timeout_seconds) as cut:
        return _post(request, config, configured, cut)


def _post(request: urllib.request.Request, config: WebhookConfig, configured: str,
          cut: threading.Event) -> Posted:
    try:
        with _OPENER.open(request, timeout=config.timeout_seconds) as response:
            ok = 200 <= response.status < 300
            return Posted(False, None, _late(config)) if cut.is_set() \
                else Posted(ok, response.status, None)
    except urllib.error.HTTPError as exc:
        wait = retry_after_seconds(exc.headers.get("Retry-After") if exc.headers else None)
        return Posted(False, exc.code, f"HTTP {exc.code}", wait)
    except Exception as exc:  # URLError, OSError, HTTPException, a ValueError of the codecs
        if cut.is_set():
            return Posted(False, None, _late(config))
        return Posted(False, None, scrub(str(getattr(exc, "reason", exc))
                                         or type(exc).__name__, configured)[:500])


def _late(config: WebhookConfig) -> str:
    return f"no complete answer within {config.timeout_seconds} s"
