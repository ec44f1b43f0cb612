"""Request bodies as JSON, refused precisely when they cannot be stored or walked.

``json.loads`` accepts more than a database or the rest of the request can take:

- nesting as deep as the interpreter's recursion limit, and past it a ``RecursionError``
  rather than a ``ValueError``, so a body of 100,000 ``[`` would end in a 500;
- ``\\u0000``, which PostgreSQL cannot keep in text (SQLite can: a value would then be
  stored on one database and refused by the other);
- unpaired UTF-16 surrogates (``\\ud800``), which no UTF-8 encoder takes: the write, the
  recorder or the response would fail (RFC 8259 §8.2 calls their behaviour unpredictable);
- bytes that are UTF-8-encoded surrogates: ``json.loads`` decodes bytes with
  ``surrogatepass``, so the body is decoded strictly here first (RFC 8259 §8.1: UTF-8);
- ``NaN``, ``Infinity`` and numbers past a float's range, which are not JSON (RFC 8259 §6);
- a name given twice in one object, of which it silently keeps the last (RFC 8259 §4).

None of this costs a walk over an ordinary body: NUL and surrogates can only come from a
``\\u`` escape once the text is strict UTF-8, and nesting deeper than the limit needs more
opening brackets than the limit (only then are the brackets outside strings counted,
before parsing).
"""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import unquote_to_bytes

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Request

# SCIM resources, PATCH and bulk requests nest five or six levels at most.
MAX_DEPTH = 32


class BodyTooLarge(Exception):
    """The request body is longer than its limit (HTTP 413)."""


class BodyUnreadable(Exception):
    """The body cannot be read as sent, with the HTTP ``status`` to answer: it did not arrive
    whole (shorter than its Content-Length, its chunked framing broken, the client gone: 400,
    RFC 9112 §6.3 and §7.1), not within ``server.read_timeout`` (408, RFC 9110 §15.5.9), or in
    a transfer coding the server does not decode (501, RFC 9112 §6.1). Nothing of it is used.
    """

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


QUERY_NOT_UTF8 = "the query string is not UTF-8 once percent-decoded (RFC 3986 §2.5)"


def read_body(req: Request, limit: int) -> bytes:
    """The request's body, or BodyTooLarge past ``limit`` bytes, with or without a
    Content-Length.

    A chunked body has no length to check up front, and Werkzeug reads such a stream only up
    to the request's ``max_content_length`` and then stops without a word: a body longer
    than the limit came out cut at the limit, and a cut that still parsed was stored. So the
    stream is allowed one byte more than the limit, and a body that reaches it is too large.
    """
    coding = unsupported_transfer_coding(req.headers.get("Transfer-Encoding"))
    if coding:
        raise BodyUnreadable(501, f"Transfer-Encoding {coding!r} is not supported; send the "
                                  "body uncompressed, chunked or with a Content-Length")
    if req.content_length is not None and req.content_length > limit:
        raise BodyTooLarge
    req.max_content_length = limit + 1
    try:
        raw = req.get_data(cache=True)
    except RequestEntityTooLarge:
        raise BodyTooLarge from None
    except Exception as exc:  # whatever the server's body reader raised
        if _timed_out(exc):
            raise BodyUnreadable(408, "the request body did not arrive in time") from None
        raise BodyUnreadable(400, "the request body could not be read whole: the connection "
                                  "ended early or its chunked framing is malformed") from None
    if len(raw) > limit:
        raise BodyTooLarge
    if req.content_length is not None and len(raw) < req.content_length:
        # gunicorn hands over what came before the client closed its side, and says nothing.
        raise BodyUnreadable(400, f"the request body ended after {len(raw)} of the "
                                  f"{req.content_length} bytes its Content-Length announced")
    return raw


def _timed_out(exc: BaseException | None) -> bool:
    # Werkzeug's LimitedStream turns the server's error into ClientDisconnected "from" it.
    for _ in range(8):  # a chain, not a cycle
        if exc is None:
            return False
        if getattr(exc, "timed_out", False) or isinstance(exc, TimeoutError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class JsonInputError(ValueError):
    """The body is not JSON Roster takes. ``syntax``: the text itself (RFC 7644
    invalidSyntax); otherwise a string value at ``where`` (invalidValue)."""

    def __init__(self, detail: str, *, syntax: bool, where: str = "") -> None:
        super().__init__(detail)
        self.detail, self.syntax, self.where = detail, syntax, where


def parse_json(raw: bytes, *, max_depth: int = MAX_DEPTH, exact: bool = False) -> Any:
    """``raw`` as JSON, or JsonInputError; see the module docstring for what is refused.

    ``exact``: numbers with a fraction or exponent are :class:`~decimal.Decimal`, as
    written (``0.1`` stays 0.1, ``1e400`` is not infinity), for bodies that carry money
    (/api/v1); their consumer checks the range. Otherwise floats, as SCIM has always had.
    """
    try:
        # RFC 8259 §8.1: a parser may ignore a byte order mark (some .NET clients send one).
        text = raw.removeprefix(codecs.BOM_UTF8).decode("utf-8")
    except UnicodeDecodeError:
        raise JsonInputError("the request body is not valid UTF-8", syntax=True) from None
    if _too_deep(text, max_depth):
        # Checked before parsing: a body nested past the interpreter's recursion limit made
        # the parser unwind a RecursionError from thousands of frames deep, where a garbage
        # collection that ran a finalizer failed too.
        raise JsonInputError(f"the request body nests deeper than {max_depth} levels",
                             syntax=True)
    try:
        value = (_EXACT_DECODER if exact else _DECODER).decode(text)
    except JsonInputError:
        raise
    except json.JSONDecodeError as exc:
        raise JsonInputError(f"the request body is not valid JSON at line {exc.lineno} "
                             f"column {exc.colno}", syntax=True) from None
    except RecursionError:
        raise JsonInputError(f"the request body nests deeper than {max_depth} levels",
                             syntax=True) from None
    except ValueError:  # an integer past Python's 4,300-digit conversion limit
        raise JsonInputError("the request body holds a number too long to read",
                             syntax=True) from None
    if "\\u" in text:
        check_strings(value)
    return value


def _not_json(name: str) -> Any:
    raise JsonInputError(f"the request body holds {name}, which is not a JSON value "
                         "(RFC 8259 §6)", syntax=True)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # 1e400 would be read as infinity, stored, and sent back as "Infinity": not JSON.
        raise JsonInputError(f"the request body holds the number {text[:40]}, too large for a "
                             "64-bit float", syntax=True)
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose names are unique (RFC 8259 §4: with duplicates, receivers behave
    unpredictably). Python keeps the last value silently, which would hide a client's bug:
    ``{"userName": "a", "userName": "b"}`` is refused, as a name repeated in another case
    already is (RFC 7643 §2.1)."""
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for name, _item in pairs:
            if name in seen:
                raise JsonInputError(f"the request body gives the name {name[:80]!r} twice "
                                     "in one object", syntax=True)
            seen.add(name)
    return value


# Python's parser takes NaN, Infinity and -Infinity, and turns 1e400 into infinity: none of
# them is JSON (RFC 8259 §6), PostgreSQL's jsonb refuses them, and a response holding one
# is not JSON either.
_DECODER = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite,
                            object_pairs_hook=_object)


def _exact(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:  # an exponent past decimal's own limit (1e999999999999999999)
        raise JsonInputError(f"the request body holds the number {text[:40]}, whose exponent "
                             "is out of range", syntax=True) from None


_EXACT_DECODER = json.JSONDecoder(parse_constant=_not_json, parse_float=_exact,
                                  object_pairs_hook=_object)


_STRINGS = re.compile(r'"(?:[^"\\]|\\[\s\S])*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def _too_deep(text: str, max_depth: int) -> bool:
    """Whether arrays and objects nest deeper than ``max_depth`` in the JSON ``text``,
    without parsing it: brackets outside strings, counted. Nothing to count unless there are
    more opening brackets than the limit (most bodies)."""
    if text.count("[") + text.count("{") <= max_depth:
        return False
    depth = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def check_strings(value: Any) -> None:
    """Raise JsonInputError for the first key or string holding NUL or an unpaired
    surrogate, naming where it is (``emails.0.value``)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            _check_text(item, where)
        elif isinstance(item, dict):
            for key, child in item.items():
                place = f"{where}.{key}" if where else str(key)
                if isinstance(key, str):  # a YAML rule file's keys may be numbers or dates
                    _check_text(key, place)
                stack.append((child, place))
        elif isinstance(item, list):
            stack.extend((child, f"{where}.{i}" if where else str(i))
                         for i, child in enumerate(item))


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise JsonInputError(f"{where or 'the body'} contains a NUL character (\\u0000), "
                             "which cannot be stored", syntax=False, where=where)
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonInputError(f"{where or 'the body'} contains an unpaired UTF-16 surrogate, "
                             "which is not text", syntax=False, where=where) from None


_HIGH_ESCAPE = re.compile(rb"%[89a-fA-F]")


def query_not_utf8(query_string: bytes) -> bool:
    """True when the percent-decoded query string is not UTF-8 (RFC 3986 §2.5). Werkzeug
    quotes such bytes back (``%FF`` became the four characters ``%FF``), which turned a filter
    on ``"%ff"`` into a filter on the text ``%FF``."""
    if query_string.isascii() and not _HIGH_ESCAPE.search(query_string):
        return False  # only ASCII, raw or escaped: UTF-8 (a lookup's filter, typically)
    try:
        unquote_to_bytes(query_string).decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


PATH_NOT_UTF8 = "the path is not UTF-8 once percent-decoded (RFC 3986 §2.5)"


def path_not_utf8(environ: Mapping[str, Any]) -> bool:
    """True when the request's path, percent-decoded, is not UTF-8 (RFC 3986 §2.5).
    Werkzeug decodes it with U+FFFD in place of such bytes, so ``Caf%E9`` and ``Caf%FF``
    both named whatever is called "Caf\ufffd". The path as sent (``RAW_URI``, which
    gunicorn and Werkzeug's servers set, before the query) is read when there is one, else
    ``PATH_INFO`` (its bytes as Latin-1, PEP 3333)."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if isinstance(raw, str):
        path = raw.partition("?")[0].encode("latin-1", "replace")
        if path.isascii() and not _HIGH_ESCAPE.search(path):
            return False
        data = unquote_to_bytes(path)
    else:
        path_info = environ.get("PATH_INFO", "")
        if path_info.isascii():
            return False
        data = path_info.encode("latin-1", "replace")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def unsupported_transfer_coding(transfer_encoding: str | None) -> str | None:
    """A Transfer-Encoding coding other than ``chunked`` (which the server decodes), else
    None: a ``gzip`` transfer coding would reach Roster still compressed (RFC 9112 §6.1: 501)."""
    for coding in (transfer_encoding or "").lower().split(","):
        coding = coding.strip()
        if coding and coding not in ("chunked", "identity"):
            return coding
    return None


def unsupported_coding(content_encoding: str | None) -> str | None:
    """The request's Content-Encoding when it is one Roster cannot read (anything but
    ``identity``), else None. Bodies are read as sent: a compressed one would otherwise be
    refused as "not UTF-8" instead of by its real reason (RFC 9110 §8.4, §15.5.16: 415)."""
    coding = (content_encoding or "").strip().lower()
    return coding if coding and coding != "identity" else None
