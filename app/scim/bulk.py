"""POST /scim/v2/Bulk (RFC 7644 §3.7): many operations, each in its own transaction.

Every operation is dispatched to the very view that serves it on its own URL (same
parsing, dialect normalisation, validation, ETags, errors and transaction), inside a
nested request context, so Bulk cannot drift from the single-resource behaviour. A
failing operation rolls back alone; the ones before it stay committed (§3.7.3).
``bulkId:<id>`` references in paths and data are resolved from earlier POSTs; an
operation whose reference is created later in the request waits for it (§3.7.2). Each
operation costs one request of the credential's rate limit, charged before any runs
(``_charge``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Response, current_app, request
from limits import RateLimitItem
from werkzeug.test import EnvironBuilder

from app.api.ratelimit import charge, request_limit
from app.scim.errors import (
    ERROR_SCHEMA,
    ScimError,
    error_response,
    require_message_schema,
    scim_response,
)
from app.scim.http import authenticated, base_url, scim_settings
from app.scim.request import json_body

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# A control character is no part of a path: building the operation's request drops tabs
# and line breaks (URL parsing), so "/Users/a<LF>b" addressed the user "ab".
_PATH = re.compile(r"^/(Users|Groups)(/[^/?#\x00-\x1f\x7f]+)?\Z")
# An entity-tag (RFC 9110 §8.8.3) holds no control character; CR or LF in an If-Match
# header failed the building of the operation's request, and the whole Bulk was a 500.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A reference is a whole value, or a whole path segment: "bulkId:qwerty" (RFC 7644 §3.7.2).
# Text that merely contains "bulkId:" (a title, a note) is data, never rewritten.
_REF = re.compile(r"bulkId:([^/\"\s]+)\Z")


@dataclass
class _Operation:
    """One validated operation of the request, as the client sent it."""

    index: int
    method: str
    path: str
    bulk_id: str | None
    version: str | None
    data: Any
    refs: set[str] = field(default_factory=set)


class _OperationError(Exception):
    def __init__(self, status: int, detail: str, scim_type: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.scim_type = status, detail, scim_type


def _limits() -> tuple[int, int]:
    scim = scim_settings()
    return scim["bulk_max_operations"], scim["bulk_max_payload_bytes"]


def max_operations() -> int:
    """The most operations a Bulk can hold and succeed: ``scim.bulk_max_operations``, or
    the per-credential rate limit's requests per window when that is smaller (each
    operation costs one request), as /ServiceProviderConfig advertises it."""
    rate = request_limit("scim")
    configured: int = scim_settings()["bulk_max_operations"]
    return configured if rate is None else min(configured, rate.amount)


def bulk() -> Response:
    """RFC 7644 §3.7: run the operations, answer a BulkResponse with a status per operation."""
    authenticated()  # first: a bad token is one 401, not one per operation
    max_ops, max_bytes = _limits()
    if request.content_length is not None and request.content_length > max_bytes:
        raise ScimError(413, f"the bulk request is larger than maxPayloadSize ({max_bytes} "
                             "bytes)")
    payload = json_body(max_bytes)
    require_message_schema(payload.get("schemas"), BULK_REQUEST)
    raw_ops = payload.get("Operations", payload.get("operations"))
    if not isinstance(raw_ops, list):
        raise ScimError(400, "a BulkRequest needs an Operations array", "invalidSyntax")
    if len(raw_ops) > max_ops:
        # 413 without a scimType: tooMany is about filter results (RFC 7644 §3.7.4, Table 9).
        raise ScimError(413, f"{len(raw_ops)} operations exceed maxOperations ({max_ops})")
    rate = request_limit("scim")
    if rate is not None and len(raw_ops) > rate.amount:
        # No window could ever cover it: 413 as over maxOperations, never a 429 to retry.
        raise ScimError(413, f"{len(raw_ops)} operations exceed the rate limit of {rate} "
                             f"per credential (a Bulk costs one request per operation): at "
                             f"most {rate.amount} operations fit in one window "
                             f"(maxOperations {rate.amount})")
    fail_on_errors = payload.get("failOnErrors")
    if fail_on_errors is not None and (not isinstance(fail_on_errors, int)
                                       or isinstance(fail_on_errors, bool)
                                       or fail_on_errors < 1):
        raise ScimError(400, "failOnErrors must be a positive integer", "invalidValue")
    refused = _charge(len(raw_ops), rate)
    if refused is not None:
        return refused
    results = _run(raw_ops, fail_on_errors)
    return scim_response({"schemas": [BULK_RESPONSE],
                          "Operations": [results[i] for i in sorted(results)]})


def _charge(count: int, rate: RateLimitItem | None) -> Response | None:
    """Count the operations after the first against the credential's rate limit (the
    request itself was counted as every request is) before any runs; None when allowed,
    else a SCIM 429 with Retry-After (RFC 7644 §3.12, RFC 9110 §10.2.3).

    A refused Bulk costs one request, as any refused request, and nothing for its
    operations: the rest of the window stays for requests it can cover. An allowed one
    costs every operation sent, also those failOnErrors leaves unprocessed."""
    retry_after = charge("scim", count - 1)
    if retry_after is None:
        return None
    response = error_response(429, f"a Bulk of {count} operations costs {count} requests; "
                                   f"what is left of the rate limit of {rate} per credential "
                                   f"in this window cannot cover them; retry in "
                                   f"{retry_after} s")
    response.headers["Retry-After"] = str(retry_after)
    return response


@dataclass
class _Refused:
    """An operation that did not parse: its failure, answered when its turn comes."""

    index: int
    result: dict[str, Any]
    refs: frozenset[str] = frozenset()
    bulk_id: None = None


def _run(raw_ops: list[Any], fail_on_errors: int | None) -> dict[int, dict[str, Any]]:
    """Process in order; defer operations waiting for a bulkId created later (§3.7.2).

    A malformed operation fails in its place: failOnErrors counts errors as processing
    meets them (§3.7.3 answers "the result of all processed operations"), so the valid
    operations before it run first. The bulkIds pending POSTs may still create are one set
    for the request, kept as they run (rebuilt for each waiting operation on each pass, a
    chain of references took cubic time)."""
    results: dict[int, dict[str, Any]] = {}
    resolved: dict[str, str] = {}
    declared: set[str] = set()
    pending: list[_Operation | _Refused] = []
    for index, raw in enumerate(raw_ops):
        try:
            pending.append(_parse(index, raw, declared))
        except _OperationError as exc:
            pending.append(_Refused(index, _failure(raw if isinstance(raw, dict) else {}, exc)))
    creatable = {op.bulk_id for op in pending if op.bulk_id}
    errors = 0
    progress = True
    while pending and progress:
        progress = False
        waiting: list[_Operation | _Refused] = []
        for op in pending:
            if any(ref in creatable and ref != op.bulk_id and ref not in resolved
                   for ref in op.refs):
                waiting.append(op)  # waits for an operation later in the list
                continue
            progress = True
            if op.bulk_id:
                creatable.discard(op.bulk_id)
            results[op.index] = op.result if isinstance(op, _Refused) else _execute(op, resolved)
            if int(results[op.index]["status"]) >= 400:
                errors += 1
                if fail_on_errors and errors >= fail_on_errors:
                    return results
        pending = waiting
    for op in pending:  # circular references: nothing left can ever resolve them
        assert isinstance(op, _Operation)  # a _Refused never waits
        results[op.index] = _failure(_echo(op), _OperationError(
            409, f"bulkId references {sorted(op.refs)} cannot be resolved", "invalidValue"))
        errors += 1  # errors as any other: failOnErrors stops here too
        if fail_on_errors and errors >= fail_on_errors:
            break
    return results


def _parse(index: int, raw: Any, declared: set[str]) -> _Operation:
    if not isinstance(raw, dict):
        raise _OperationError(400, "each operation must be an object", "invalidSyntax")
    method = str(raw.get("method", "")).upper()
    path = raw.get("path")
    bulk_id = raw.get("bulkId")
    if method not in METHODS:
        raise _OperationError(400, f"method must be one of {', '.join(sorted(METHODS))}",
                              "invalidValue")
    if not isinstance(path, str) or not _PATH.match(_path_with(path, lambda _ref: "x")):
        raise _OperationError(400, "path must be /Users, /Groups, /Users/{id} or "
                                   "/Groups/{id}", "invalidPath")
    is_collection = path.count("/") == 1
    if (method == "POST") != is_collection:
        raise _OperationError(400, f"{method} needs a path of "
                              f"{'a resource type' if method == 'POST' else 'one resource'}",
                              "invalidPath")
    if method == "POST":
        if not isinstance(bulk_id, str) or not bulk_id:
            raise _OperationError(400, "a POST operation needs a bulkId (RFC 7644 §3.7)",
                                  "invalidValue")
        if bulk_id in declared:
            raise _OperationError(400, f"bulkId {bulk_id!r} is used twice", "invalidValue")
        declared.add(bulk_id)
    data = raw.get("data")
    if method != "DELETE" and not isinstance(data, dict):
        raise _OperationError(400, f"a {method} operation needs a data object",
                              "invalidSyntax")
    version = raw.get("version")
    if version is not None and (not isinstance(version, str) or _CONTROL.search(version)):
        # Ignoring it would run the operation without the If-Match check it asks for.
        raise _OperationError(400, "version must be a string (an ETag such as W/\"3\") "
                              "without control characters", "invalidSyntax")
    refs = {m.group(1) for text in (*path.split("/"), *_strings(data))
            if (m := _REF.match(text))}
    return _Operation(index, method, path, bulk_id if method == "POST" else None,
                      version, data, refs)


def _path_with(path: str, replace: Callable[[str], str]) -> str:
    """``path`` with each ``bulkId:x`` segment replaced by ``replace(x)``."""
    return "/".join(replace(m.group(1)) if (m := _REF.match(part)) else part
                    for part in path.split("/"))


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | dict):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _strings(item)


def _substitute(value: Any, resolved: dict[str, str]) -> Any:
    """``value`` with every string that is a whole ``bulkId:x`` replaced by the id the POST
    of ``x`` created."""
    if isinstance(value, str):
        match = _REF.match(value)
        return resolved.get(match.group(1), value) if match else value
    if isinstance(value, list):
        return [_substitute(v, resolved) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, resolved) for k, v in value.items()}
    return value


def _execute(op: _Operation, resolved: dict[str, str]) -> dict[str, Any]:
    missing = op.refs - resolved.keys()
    if op.bulk_id in missing:  # a reference to itself: the shortest circle (§3.7.1)
        return _failure(_echo(op), _OperationError(
            409, f"the operation refers to its own bulkId {op.bulk_id!r}, which cannot be "
                 "resolved before it runs", "invalidValue"))
    if missing:
        return _failure(_echo(op), _OperationError(
            409, f"bulkId {sorted(missing)[0]!r} did not create a resource", "invalidValue"))
    path = _path_with(op.path, lambda ref: resolved.get(ref, f"bulkId:{ref}"))
    response = _dispatch(op.method, path, _substitute(op.data, resolved), op.version)
    out = _echo(op)
    out["status"] = str(response.status_code)
    body = _json(response)
    if response.status_code >= 400:
        out["response"] = body
        return out
    created_id = body.get("id") if isinstance(body, dict) else None
    if op.bulk_id and isinstance(created_id, str):
        resolved[op.bulk_id] = created_id
    out["location"] = response.headers.get("Location") or f"{base_url()}{path}"
    if response.headers.get("ETag"):
        out["version"] = response.headers["ETag"]
    return out


def _dispatch(method: str, path: str, data: Any, version: str | None) -> Response:
    """Serve one operation with the same view as its own URL, in a nested request."""
    headers = {"Authorization": request.headers.get("Authorization", "")}
    if version:
        headers["If-Match"] = version
    if agent := request.headers.get("User-Agent"):
        headers["User-Agent"] = agent
    # The client's address (ProxyFix has already applied X-Forwarded-For to it): the
    # operation's deprovisioning record names it, as the same request on its own URL does.
    builder = EnvironBuilder(path=f"/scim/v2{path}", method=method, headers=headers,
                             base_url=request.host_url,
                             environ_base={"REMOTE_ADDR": request.remote_addr}
                             if request.remote_addr else None,
                             data=None if data is None else json.dumps(data),
                             content_type="application/scim+json" if data is not None
                             else None)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        environ = builder.get_environ()
    finally:
        builder.close()
    with app.request_context(environ):
        try:
            rv = app.dispatch_request()
        except Exception as exc:
            rv = app.handle_user_exception(exc)
        result: Response = app.make_response(rv)
        return result


def _json(response: Response) -> Any:
    try:
        return json.loads(response.get_data()) if response.get_data() else {}
    except ValueError:
        return {}


def _echo(op: _Operation) -> dict[str, Any]:
    out: dict[str, Any] = {"method": op.method}
    if op.bulk_id:
        out["bulkId"] = op.bulk_id
    return out


def _failure(raw: dict[str, Any], exc: _OperationError) -> dict[str, Any]:
    """A failed operation as §3.7.3 shows it: status and the SCIM error as response."""
    out: dict[str, Any] = {"method": str(raw.get("method", ""))}
    if isinstance(raw.get("bulkId"), str):
        out["bulkId"] = raw["bulkId"]
    error: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(exc.status),
                             "detail": exc.detail}
    if exc.scim_type:
        error["scimType"] = exc.scim_type
    out["status"] = str(exc.status)
    out["response"] = error
    return out
