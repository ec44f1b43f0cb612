"""A URL as Roster shows it: its credentials masked, enough left to tell URLs apart.

A URL Roster is given may carry credentials: a userinfo (``https://user:pass@host/``, RFC
3986 §3.2.1), a credential-named query parameter (``?token=``, Azure's ``?code=``, a SAS
``sig``), an opaque path segment or query value (Slack's ``/services/T.../B.../<token>``)
or an opaque label of its host name (an AWS Lambda function URL's
``<url-id>.lambda-url.<region>.on.aws``, a request bin's ``<id>.m.pipedream.net``: the host
is the whole credential of a receiver that takes any POST to it).
Webhook endpoint keys (app/events/endpoints.py), SSO connections' metadata and discovery
URLs and settings errors show a URL through :func:`masked_url`. Userinfo and
credential-named query values become ``***``; an opaque piece (16 characters or more of a
token's alphabet mixing two of lower case, upper case and digits, or 20 or more letters and
digits in one run) becomes ``***`` and the first 6 hex digits of its SHA-256, so two URLs
that differ only there stay apart and nothing of the secret can be read back. Of the host,
the labels before the last two (those name the service: ``on.aws``, ``pipedream.net``) are
taken through the same rule, lower-cased first (a host name's case means nothing, RFC 4343);
an IP literal is kept.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
# Query parameter names taken to carry a credential (the value is masked, the name kept).
SECRET_PARAMETER = re.compile(
    r"(?i)token|secret|sig|key|pass|pwd|auth|code|credential|session|hash|jwt|bearer")


# An opaque segment or value: long, of a token's alphabet (base64url, hex, a GUID pair).
_OPAQUE = re.compile(r"[A-Za-z0-9._~+=@:-]{16,}")
_RUN = re.compile(r"[A-Za-z0-9]{20,}")
_CLASSES = (re.compile("[a-z]"), re.compile("[A-Z]"), re.compile("[0-9]"))


def opaque(piece: str) -> bool:
    """Whether a path segment or query value looks like a generated secret, not a word:
    16+ characters of a token's alphabet that mix lower case, upper case or digits, or 20+
    letters and digits without a separator."""
    text = unquote(piece)
    return bool(_RUN.fullmatch(text)) or (bool(_OPAQUE.fullmatch(text)) and sum(
        bool(c.search(text)) for c in _CLASSES) >= 2)


def fingerprint(piece: str) -> str:
    """``***`` and the start of the SHA-256 of an opaque piece: apart from other pieces,
    nothing of it readable (an opaque piece has far more than the 24 bits shown)."""
    return MASK + hashlib.sha256(piece.encode()).hexdigest()[:6]


def masked_path(path: str) -> str:
    """The path with its opaque segments fingerprinted, the others as written."""
    return "/".join(fingerprint(s) if opaque(s) else s for s in path.split("/"))


def host_secrets(host: str) -> list[str]:
    """The opaque labels of a host name (``host`` without userinfo or port), but for the
    last two; none of an IP address."""
    labels = host.split(".")
    if host.startswith("[") or all(label.isdigit() for label in labels):
        return []
    return [label for label in labels[:-2] if opaque(label.lower())]


def masked_netloc(netloc: str) -> str:
    """The authority with its userinfo masked and the opaque labels of its host name
    fingerprinted (lower-cased), its port kept."""
    _userinfo, at, hostport = netloc.rpartition("@")
    host, colon, port = hostport, "", ""
    if not hostport.startswith("[") and ":" in hostport:
        host, colon, port = hostport.rpartition(":")
    secrets = set(host_secrets(host))
    if secrets:
        host = ".".join(fingerprint(label.lower()) if label in secrets else label
                        for label in host.split("."))
    return f"{MASK}@{host}{colon}{port}" if at else f"{host}{colon}{port}"


def masked_query(query: str) -> str:
    """The query with the values of credential-like parameters masked, opaque values of the
    others fingerprinted, the rest as written."""
    pieces = []
    for piece in query.split("&"):
        name, equals, value = piece.partition("=")
        if equals and SECRET_PARAMETER.search(unquote(name.replace("+", " "))):
            pieces.append(f"{name}={MASK}")
        elif equals and opaque(value):
            pieces.append(f"{name}={fingerprint(value)}")
        else:
            pieces.append(fingerprint(piece) if not equals and opaque(piece) else piece)
    return "&".join(pieces)


def masked_url(url: str) -> str:
    """The URL with its userinfo and the values of its credential-like query parameters
    masked (``https://***@hooks.example/in?channel=ops&token=***``), its opaque path
    segments, query values and host labels fingerprinted (``/services/T0001/B0001/***3fa2c1``,
    ``https://***27059e.lambda-url.eu-west-1.on.aws/``). A URL without credentials is
    returned as it is, and a masked URL is its own mask (a webhook endpoint's key, stored in
    its deliveries, is this)."""
    parts = urlsplit(url)
    netloc = masked_netloc(parts.netloc)
    path = masked_path(parts.path)
    query = masked_query(parts.query) if parts.query else parts.query
    if (netloc, path, query) == (parts.netloc, parts.path, parts.query):
        return url
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))
