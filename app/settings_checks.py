"""Checks of settings that are read later than at start (rate-limit strings, key files), and
of the database URL.

A bad value here used to surface only when first used: a rate limit when a gunicorn worker
built the app (every worker failed to boot, and was rebooted, forever), a key file at the
first SAML metadata, login or OIDC discovery request (a 500). ``settings.validate`` runs
these, so every process refuses such a configuration at start, one line per problem.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from limits import parse_many
from limits.util import SINGLE_EXPR
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.url_masks import masked_url

RATE_LIMIT_STORAGES = ("database", "memory")


# Upper bounds by a setting's unit, past which it overflowed at its first use, with a
# traceback (a timedelta or a date past year 1 or 9999: `roster lifecycle purge` with a
# retention of 10**12 days; SQLite's busy timeout and PostgreSQL's lock timeout are C ints).
_CENTURY_DAYS = 36500
UPPER_BOUNDS = {"_days": _CENTURY_DAYS, "_hours": _CENTURY_DAYS * 24,
                "_seconds": _CENTURY_DAYS * 86400, "_ms": 2**31 - 1}


# What `roster serve` hands gunicorn and its workers, bounded: a worker count of 10**20
# reached gunicorn's command line (it forks until the host gives out), a timeout that large
# overflowed its sleeps, and a switch interval that large made CPython's 0.0 without a word.
# Workers: far more than any host's cores (gunicorn suggests 2-4 per core); a request's
# timeouts within a day; a GIL slice within a second.
SERVER_BOUNDS = {"workers": 1024, "timeout": 86400, "read_timeout": 86400,
                 "switch_interval_us": 1_000_000}
# An empty signing.dev_key_file named the checkout's directory ("Is a directory").
DEV_KEY_FILE_EMPTY = "signing.dev_key_file must name a file when signing.private_key is not set"


def upper_bound_problems(settings: dict[str, dict[str, Any]]) -> list[str]:
    """Every ``*_days``, ``*_hours``, ``*_seconds`` and ``*_ms`` setting within its bound
    (100 years; 2147483647 ms), the ``SERVER_BOUNDS`` too; and a development signing key
    file named when no signing.private_key is set."""
    problems = [f"{section}.{key} must be at most {bound}"
                for section, values in settings.items() for key, value in values.items()
                for suffix, bound in UPPER_BOUNDS.items()
                if key.endswith(suffix) and isinstance(value, int | float)
                and not isinstance(value, bool) and value > bound]
    problems += [f"server.{key} must be at most {bound}"
                 for key, bound in SERVER_BOUNDS.items() if settings["server"][key] > bound]
    signing = settings["signing"]
    if not signing["private_key"] and not signing["dev_key_file"].strip():
        problems.append(DEV_KEY_FILE_EMPTY)
    return problems


def base_url_problems(base_url: str) -> list[str]:
    """``app.base_url``: an absolute http(s) URL with a host and no query or fragment. The SCIM
    base URL, ``meta.location``, SAML entity ids and ACS URLs and the OIDC issuer are built on
    it (OpenID Connect Discovery 1.0 §3: an issuer has no query or fragment); "not a url"
    printed "not a url/scim/v2" to give the IdP. Shown with credentials masked."""
    if web_url(base_url) and "?" not in base_url and "#" not in base_url:
        return []
    return ["app.base_url must be an absolute http(s) URL without query or fragment "
            f"(https://roster.example.com), got {shown_url(base_url)}"]


def joined_webhook_urls(webhooks: dict[str, Any]) -> list[str]:
    """``webhooks.urls`` is one comma-separated string (its default's type); as every list
    setting (README, Configuration), it may also be a JSON array of strings in the
    environment, or a TOML array in a config file: either is joined here, in place. Both
    were refused ('must be http(s) URLs ... got ["https://a..."]', 'must be str')."""
    urls = webhooks["urls"]
    if isinstance(urls, str) and urls.lstrip().startswith("["):
        try:
            urls = json.loads(urls)
        except ValueError:
            urls = None
    if isinstance(urls, list) and all(isinstance(url, str) for url in urls):
        webhooks["urls"] = ",".join(url.strip() for url in urls if url.strip())
    elif not isinstance(urls, str):
        webhooks["urls"] = ""  # judged here, not again entry by entry
        return ["webhooks.urls must be comma-separated URLs or a JSON array of strings "
                "(not shown: webhooks.urls may hold a secret)"]
    return []


def webhook_url_problems(urls: str) -> list[str]:
    """Each ``webhooks.urls`` entry an absolute http(s) URL in ASCII, checked at start: it was
    checked only as `roster worker` started, and one that does not even split
    (``http://[::1``) stopped it with a traceback. Shown with credentials masked."""
    entries = [url.strip() for url in urls.split(",") if url.strip()]
    return [f"webhooks.urls entries must be absolute http(s) URLs in ASCII (a host in IDNA "
            f"form, the rest percent-encoded), got {shown_url(url)}"
            for url in entries if not (web_url(url) and url.isascii())]


def web_url(url: str) -> bool:
    """An absolute http(s) URL with a host and, if any, a numeric port (RFC 3986 §4.3)."""
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname) \
            and (parts.port is None or parts.port > 0)
    except ValueError:  # "http://[::1": an unclosed IPv6 literal; a port that is no number
        return False


def shown_url(url: str) -> str:
    """A URL for a configuration error: credentials masked (app/url_masks.py), or not shown
    at all when it does not even split into parts."""
    try:
        return repr(masked_url(url))
    except ValueError:
        return "a value that is not a URL (not shown)"


# The longest window a limit may count over (a year and a day).
MAX_LIMIT_WINDOW_SECONDS = 366 * 24 * 3600
# The most requests a limit may allow per window: far below the 64-bit counters' range,
# however many leases and charges a window sees.
MAX_LIMIT_AMOUNT = 10**12


def _limit_problem(name: str, text: object, least: str, example: str, *,
                   may_be_empty: bool = False) -> str | None:
    """Why a limit string is no single limit of at least one: ``limits`` also parses
    "600/minute;20/second" (or with a comma) as several, and the limiters count only the
    first, so the others would be silently ignored."""
    try:
        parsed = parse_many(str(text))
    except ValueError:
        parsed = []
    if len(parsed) > 1:
        return (f"ratelimit.{name} must be one limit such as '{example}', not several "
                f"(only the first would be counted), got {text!r}")
    if not parsed or parsed[0].amount < 1:
        empty = " or be empty" if may_be_empty else ""
        return f"ratelimit.{name} must look like '{example}' (at least one {least}){empty}, " \
               f"got {text!r}"
    match = SINGLE_EXPR.match(str(text).strip())
    if match is not None and match.group(3) is not None and int(match.group(3)) == 0:
        # ``limits`` reads a window of zero ("10/0 minute") as one of its unit: not what
        # the setting says, and no window at all is meant by nobody.
        return f"ratelimit.{name} must count over a window longer than zero, got {text!r}"
    if parsed[0].amount > MAX_LIMIT_AMOUNT:
        # The shared counters are 64-bit integers: a limit past them made every request with
        # a credential a 500 (with storage = "database"), the lease write overflowing.
        return (f"ratelimit.{name} must allow at most {MAX_LIMIT_AMOUNT} per window (to "
                f"count nothing, set ratelimit.enabled = false), got {text!r}")
    if parsed[0].get_expiry() > MAX_LIMIT_WINDOW_SECONDS:
        # "5/10000 years" passed, and a counter's window end then overflowed the date type:
        # every request with a credential was a 500.
        return f"ratelimit.{name} must count over a window of at most a year, got {text!r}"
    return None


def ratelimit_problems(ratelimit: dict[str, Any]) -> list[str]:
    """Limit strings the ``limits`` library cannot parse as one limit, and an unknown
    storage."""
    problems = [problem for name in ("api", "scim")
                if (problem := _limit_problem(name, ratelimit[name], "request", "600/minute"))]
    # Empty: no limit on failed authentications.
    if ratelimit["failed_auth"] and (problem := _limit_problem(
            "failed_auth", ratelimit["failed_auth"], "failure", "60/minute",
            may_be_empty=True)):
        problems.append(problem)
    if ratelimit["storage"] not in RATE_LIMIT_STORAGES:
        problems.append(f"ratelimit.storage must be database or memory, "
                        f"got {ratelimit['storage']!r}")
    return problems


def url_list_problems(name: str, urls: list[str]) -> list[str]:
    """Each entry an absolute http(s) URL with a host (RFC 3986 §4.3): anything else
    matched no page, and every redirect was refused without a word at start. A bad entry is
    named with its credentials masked (app/url_masks.py): the line goes to every log."""
    return [f"{name} entries must be absolute http(s) URLs, got {shown_url(url)}"
            for url in urls if not web_url(url)]


def default_redirect_problems(default: str, allowed: list[str]) -> list[str]:
    """``sso.default_redirect_url`` must be one the allow-list admits (an entry, or a path
    under one with the same scheme, host and port, as app/sso/redirects.py reads them): one
    outside it was accepted, and then every login started without `next` was refused (400,
    "The page to return to is not allowed") and every one without RelayState ended on the
    signed-in page."""
    if not default:
        return []
    try:
        target = urlsplit(default)
        for entry in allowed:
            base = urlsplit(entry)
            if (base.scheme.lower(), base.hostname, base.port) != \
                    (target.scheme.lower(), target.hostname, target.port):
                continue
            path, under = target.path or "/", base.path or "/"
            if default == entry or path == under or \
                    path.startswith(under if under.endswith("/") else under + "/"):
                return []
    except ValueError:  # no URL at all: refused below like any other outside the list
        pass
    return ["sso.default_redirect_url must be one of sso.allowed_redirect_urls or a URL under "
            f"one, got {shown_url(default)}"]


def one_underscore_problem(name: str, settings: Mapping[str, Mapping[str, Any]]) -> str | None:
    """A ``ROSTER_`` variable without the ``__`` that separates section and key, but that
    would name a setting with it (ROSTER_DATABASE_URL, ROSTER_APP_SECRET_KEY_FILE): it was
    skipped without a word, and every command ran on the default (SQLite) database."""
    rest = name[len("ROSTER_"):].lower()
    for section, keys in settings.items():
        key = rest.removeprefix(f"{section}_")
        if key != rest and (key in keys or key.removesuffix("_file") in keys):
            meant = f"ROSTER_{section}__{key}".upper()
            return (f"{name} is not read: a setting's variable separates section and key "
                    f"with two underscores ({meant})")
    return None


def named_source(source: str, names: Mapping[tuple[str, str], str] | None, section: str,
                 key: str | None = None) -> str:
    """``source`` with the environment variables that set ``section`` (its ``key``) named:
    "unknown key server.bindd in environment" left the operator to guess the variable
    (ROSTER_SERVER__BINDD, or a ROSTER_SERVER__BINDD_FILE)."""
    found = sorted(name for (s, k), name in (names or {}).items()
                   if s == section and key in (None, k))
    return f"{source} ({', '.join(found)})" if found else source


# A host name (RFC 1123 §2.1 labels) or an IPv4 address; IPv6 comes in brackets.
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?\Z")


def bind_problem(value: str) -> str | None:
    """Why gunicorn could not bind ``value`` (``server.bind``, `roster serve --bind`: HOST,
    HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N, as gunicorn's ``--bind`` reads it), or
    None. Gunicorn was handed whatever was given: a port ``http`` or ``70000`` failed only
    there, in its own words; a stray space bound a host name nobody has, retried 5 times."""
    if value.startswith("unix:"):
        return None if value.removeprefix("unix:").lstrip("/") else "no socket path"
    if value.startswith("fd://"):
        return None if value[5:].isdigit() else "not a file descriptor number"
    netloc = value.removeprefix("tcp://")
    if netloc.startswith("["):
        host, sep, port = netloc[1:].partition("]")
        if not sep or (port and not port.startswith(":")):
            return "an IPv6 address goes in brackets: [::1]:8000"
        colon, port = port[:1], port[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"{host!r} is not an IPv6 address"
    else:
        host, colon, port = netloc.partition(":")
        if not _HOST.match(host) and not (colon and not host):  # ":8000": every interface
            return f"{host!r} is not a host name or IPv4 address"
    if colon and not (port.isascii() and port.isdigit() and int(port) <= 65535):
        return f"{port!r} is not a port number (0 to 65535)"
    return None


def bind_problems(bind: str) -> list[str]:
    """``server.bind`` as gunicorn would read it (the Docker image's gunicorn too)."""
    why = bind_problem(bind)
    return [f"server.bind {bind!r}: {why}"] if why else []


def database_url_problems(url: str) -> list[str]:
    """database.url: a SQLite or PostgreSQL URL that parses, its password never shown."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return [f"database.url is not a valid database URL: {_redact_url(url)!r}"]
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        return [f"database.url must be sqlite or postgresql, got {parsed.get_backend_name()!r}"]
    if parsed.host and "@" in parsed.host:
        return ["database.url holds an '@' in its password: percent-encode it (%40)"]
    return []


def _redact_url(url: str) -> str:
    """The scheme and the host part of a database URL that does not parse: its userinfo (up
    to the last '@', a password may hold one) and its query (``?password=``) masked."""
    scheme, slashes, rest = url.partition("://")
    if not slashes:  # not a URL at all: perhaps a password pasted in the wrong place
        return "***"
    _userinfo, at, rest = rest.rpartition("@")
    rest, query, _ = rest.partition("?")
    return f"{scheme}://{'***@' if at else ''}{rest}{'?***' if query else ''}"
