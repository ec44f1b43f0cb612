"""How Roster names a webhook URL in its tables, logs and output: without its credentials.

A URL in ``webhooks.urls`` may carry credentials: a userinfo (``https://user:pass@host/``,
RFC 3986 §3.2.1, sent as HTTP Basic authentication, RFC 7617), a secret query parameter
(``?token=...``, Azure Functions' ``?code=...``, a SAS ``sig``) or a secret path segment
(Slack's ``/services/T.../B.../<token>``, a Teams or Logic Apps id) or a secret host label
(an AWS Lambda function URL's id, a request bin's). The URL itself lives
only in the settings (the environment or the config file, like ``webhooks.secret``);
deliveries, fan-out cursors, the log, ``roster events`` and the API name the endpoint by its
*key*, the URL with those credentials masked. A URL without credentials is its own key.

Userinfo and credential-named query values become ``***``: a rotated token stays the same
endpoint. An *opaque* path segment or other query value (16 characters or more of a token's
alphabet mixing two of lower case, upper case and digits, or 20 or more letters and digits
in one run: RFC 3986 §3.3 / §3.4 leave its meaning to the receiver), or such a label of
the host name before its last two, becomes ``***`` and the
first 6 hex digits of its SHA-256, so two endpoints that differ only there (two Slack
channels' hooks) stay two, and nothing of the secret can be read back from the key.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from app.errors import InvalidInput
from app.url_masks import MASK, SECRET_PARAMETER, host_secrets, masked_url, opaque

__all__ = ["MASK", "WebhookConfig", "endpoint_key", "request_target", "scrub"]


def endpoint_key(url: str) -> str:
    """The URL with its userinfo and the values of its credential-like query parameters
    masked (``https://***@hooks.example/in?channel=ops&token=***``), its opaque path
    segments and query values fingerprinted (``/services/T0001/B0001/***3fa2c1``): what
    Roster stores and shows for the endpoint (app/url_masks.py). A URL without credentials
    is returned as it is; a key is its own key (``roster events reset-cursor`` takes
    either)."""
    return masked_url(url)


def request_target(url: str) -> tuple[str, str | None]:
    """The URL to POST to (without its userinfo, which urllib would take for the host) and
    the ``Authorization`` header its userinfo stands for (Basic, RFC 7617 §2), if any."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    credentials = f"{unquote(user)}:{unquote(password)}".encode()
    return (urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)),
            "Basic " + base64.b64encode(credentials).decode())


def _secrets_of(url: str) -> list[str]:
    """The credentials a URL carries: its userinfo, its credential-like query values and
    its opaque path segments and query values, as written and percent-decoded."""
    parts = urlsplit(url)
    found = [parts.netloc.rpartition("@")[0]] if "@" in parts.netloc else []
    found += [v for label in host_secrets(parts.hostname or "") for v in (label, label.upper())]
    found += [s for s in parts.path.split("/") if opaque(s)]
    for piece in parts.query.split("&") if parts.query else []:
        name, equals, value = piece.partition("=")
        if equals and value and (SECRET_PARAMETER.search(unquote(name.replace("+", " ")))
                                 or opaque(value)):
            found.append(value)
        elif not equals and opaque(piece):
            found.append(piece)
    return sorted({v for s in found for v in (s, unquote(s), *s.split(":")) if v},
                  key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` (an error of a POST to ``url``) with the URL's credentials masked, before it
    is stored as the delivery's ``last_error`` or logged."""
    for secret in _secrets_of(url):
        text = text.replace(secret, MASK)
    return text


def _sendable(url: str) -> bool:
    """An http(s) URL http.client can send as written: ASCII, a host with a valid IDNA form
    (a non-ASCII path raised UnicodeEncodeError inside the worker and stopped it)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or not url.isascii():
        return False
    try:
        parts.hostname.encode("idna")
    except UnicodeError:
        return False
    return True


@dataclass(frozen=True)
class WebhookConfig:
    """The [webhooks] settings. ``urls`` as configured, credentials included: tables, logs
    and output name each by its :attr:`endpoints` key (app/events/endpoints.py)."""

    urls: tuple[str, ...] = field(repr=False)
    secret: str = field(repr=False)
    # The secret before a rotation: while set, deliveries are signed with both.
    previous_secret: str = field(default="", repr=False)
    timeout_seconds: int = 5
    retry_base_seconds: int = 2
    retry_max_seconds: int = 600
    dead_after_seconds: int = 86400
    lease_seconds: int = 30
    batch_size: int = 50
    poll_interval_ms: int = 200
    _targets: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = [endpoint_key(u) for u in self.urls]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise InvalidInput("webhooks.urls must not list one endpoint twice (URLs that "
                               f"differ only in credentials): {', '.join(twice)}")
        object.__setattr__(self, "_targets", dict(zip(keys, self.urls, strict=True)))

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The endpoints' keys, in the order of ``urls``: each URL, credentials masked."""
        return tuple(self._targets)

    def target(self, endpoint: str) -> str:
        """The configured URL (credentials included) of an endpoint key."""
        return str(self._targets.get(endpoint, endpoint))

    @classmethod
    def from_settings(cls, settings: dict[str, dict[str, Any]]) -> WebhookConfig:
        """Build from validated settings; urls is a comma-separated list."""
        section = dict(settings["webhooks"])
        urls = tuple(u.strip() for u in section.pop("urls").split(",") if u.strip())
        bad = [endpoint_key(u) for u in urls if not _sendable(u)]
        if bad:
            raise InvalidInput("webhooks.urls must be http(s) URLs in ASCII (a host in IDNA "
                               f"form, the rest percent-encoded), got {', '.join(bad)}")
        if urls and not section["secret"]:
            raise InvalidInput("webhooks.secret is required when webhooks.urls is set: "
                               "ROSTER_WEBHOOKS__SECRET or ROSTER_WEBHOOKS__SECRET_FILE")
        return cls(urls=urls, **section)
