"""Per-request SCIM plumbing: the unit of work, the actor, settings and resource responses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from flask import Response, current_app, g, request
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from app.audit import Actor
from app.db import Database, Reader
from app.directory.tokens import touch
from app.json_input import QUERY_NOT_UTF8, query_not_utf8
from app.scim.auth import Caller, authenticate_request, hold_directory
from app.scim.dialect import names_entra_flag
from app.scim.dialect_report import LEGACY_ENTRA, infer_dialect
from app.scim.errors import SCIM_MEDIA_TYPE, ScimError, scim_response
from app.scim.etag import not_modified, with_etag
from app.scim.projection import Projection
from app.scim.query_string import query_pairs
from app.scim.request import json_body

T = TypeVar("T")


def authenticated() -> Caller:
    """The calling directory, authenticated once per request in a short read transaction
    (``read_unit``), for views that need the caller before, or without, their own."""
    caller: Caller | None = g.get("scim_caller")
    if caller is None:
        with read_unit() as (_connection, caller):
            pass
    return caller


def _authenticate(session: Reader) -> Caller:
    # Tried once per request: the flight recorder does not look up a refused token again.
    g.scim_auth_tried = True
    g.scim_caller = caller = authenticate_request(session)
    g.directory_id = caller.directory.id
    return caller


def before_write(parse: Callable[[], T]) -> T:
    """Parse a write request's body before its write transaction (none of that work then
    happens while SQLite's single write lock is held); the caller is authenticated in the
    transaction itself (``unit_of_work``), so a create costs one transaction, not two.

    A body that does not parse is reported only once the caller is known: a 401 still
    comes before any 400 about the body, and a caller without a token learns nothing.
    """
    try:
        return parse()
    except Exception:
        authenticated()
        raise


@contextmanager
def unit_of_work() -> Iterator[tuple[Session, Caller]]:
    """One write transaction for the whole request, which authenticates the caller first
    and holds its directory active (``hold_directory``) before it writes anything.

    Any SCIM write may evaluate grants (a user or membership change, a group rename), so
    it then holds the organization's mapping lock shared, before any row lock
    (app/mapping/locks.py): a rule-set apply never runs beside it. The directory comes
    first, as in an SSO login (app/sso/login.py): one order everywhere. On PostgreSQL both
    are one statement (``hold_directory``: the lock's try a column of the row's FOR SHARE
    select); a failed try then waits as ``share_mapping`` does.
    """
    caller = g.get("scim_caller")
    with current_app.extensions["roster.db"].transaction() as session:
        status_read = caller is None
        if caller is None:
            caller = _authenticate(session)
        hold_directory(session, caller, status_read=status_read)  # and the mapping lock
        _touch_once(session, caller)
        yield session, caller


@contextmanager
def read_unit() -> Iterator[tuple[Connection, Caller]]:
    """One read transaction for the whole request on a bare connection
    (``Database.reader``), which authenticates the caller first. SCIM reads (lists,
    searches, GETs by id, discovery) read Core rows only; nothing in it may need the ORM."""
    db = current_app.extensions["roster.db"]
    caller = g.get("scim_caller")
    with db.reader() as connection:
        if caller is None:
            caller = _authenticate(connection)
        yield connection, caller
    _touch_after_read(db, caller)


def _touch_after_read(db: Database, caller: Caller) -> None:
    # A SQLite reader that starts writing can fail at once (stale WAL snapshot), so the
    # once-a-minute last_used_at stamp is written in its own short transaction.
    if caller.token.touch_at is not None and not g.get("scim_touched"):
        with db.transaction() as session:
            _touch_once(session, caller)


def _touch_once(session: Session, caller: Caller) -> None:
    # Bulk runs several units in one request: the token is stamped by the first.
    if not g.get("scim_touched"):
        touch(session, caller.token)
        g.scim_touched = True


def actor_of(caller: Caller) -> Actor:
    """The audit actor of a SCIM request: the directory token that made it, when the request
    arrived and the IdP dialect its notes so far show (for deprovisioning records)."""
    token = caller.token
    # An OAuth access token acts for its client (issue 7: "token or OAuth client").
    kind, actor_id = (("oauth_client", token.client_id) if token.kind == "access_token"
                      else ("scim_token", token.id))
    return Actor(type=kind, id=actor_id, request_id=g.get("request_id"),
                 ip=request.remote_addr, user_agent=request.headers.get("User-Agent"),
                 received_at=g.get("received_at"), dialect=request_dialect())


def request_dialect() -> str:
    """This request's dialect label (app/scim/dialect_report.py) from its notes; a request
    on a tenant URL with Entra's aadOptscim062020 flag and no sign of the legacy dialect
    (provision-on-demand ignores the flag) is compliant Entra, also with notes that both
    dialects need (a bare-string manager, roles[primary eq "True"]). The flag is named in
    any case, with or without a value (``?aadOptSCIM062020=true``)."""
    notes = g.get("scim_notes") or ()
    if not LEGACY_ENTRA.intersection(notes) and names_entra_flag(request.args):
        return "entra-compliant"
    return infer_dialect(notes)[0]


def scim_settings() -> dict[str, Any]:
    """The [scim] settings section."""
    return current_app.config["ROSTER"]["scim"]


def base_url() -> str:
    """The public SCIM base URL, used in meta.location and $ref (RFC 7644 §3.1)."""
    return current_app.config["ROSTER"]["app"]["base_url"].rstrip("/") + "/scim/v2"


def body() -> dict[str, Any]:
    """The request's JSON object, within app.max_body_bytes."""
    return json_body(current_app.config["ROSTER"]["app"]["max_body_bytes"])


# The query parameters of RFC 7644 §3.4.2 and §3.9 (and RFC 9865's cursor), by lower case.
PARAMETERS = {name.lower(): name for name in (
    "filter", "sortBy", "sortOrder", "startIndex", "count", "cursor", "attributes",
    "excludedAttributes")}


def query_args() -> dict[str, str]:
    """The query string's parameters, SCIM's names matched in any case like attribute names
    (RFC 7643 §2.1), as the .search body's already are: ``?Filter=...`` was ignored and
    answered every user. A SCIM parameter given twice (``filter=a&FILTER=b``) is a 400:
    RFC 7644 §3.4.2 has one of each, and answering the first alone would hide the second
    (invalidFilter for ``filter``, else invalidValue). Other names pass as sent, first
    value first.

    A plain dict: a MultiDict builds a BadRequestKeyError for every parameter a lookup
    leaves out.
    """
    if query_not_utf8(request.query_string):
        raise ScimError(400, QUERY_NOT_UTF8, "invalidValue")
    args: dict[str, str] = {}
    for name, value in request.args.items(multi=True):
        key = PARAMETERS.get(name.lower())
        if key is None:
            args.setdefault(name, value)
        elif key in args:
            raise ScimError(400, f"the query parameter {key} is given more than once",
                            "invalidFilter" if key == "filter" else "invalidValue")
        else:
            args[key] = value
    if "filter" in args and b"+" in request.query_string:
        args["filter"] = _filter_with_plus(args["filter"])
    return args


def _filter_with_plus(decoded: str) -> str:
    """The ``filter`` parameter with a raw ``+`` read as a plus where the client encoded its
    spaces as %20 (Okta; app.scim.query_string)."""
    text = request.query_string.decode("utf-8", "replace")
    return next((value for name, value in query_pairs(text) if name.lower() == "filter"),
                decoded)


def query_projection(core_urn: str, always: frozenset[str]) -> Projection:
    """``attributes``/``excludedAttributes`` from the query string (RFC 7644 §3.9)."""
    args = query_args()
    return Projection.parse(core_urn, always, args.get("attributes"),
                            args.get("excludedAttributes"))


def resource_response(resource: dict[str, Any], version: str, status: int = 200, *,
                      location: str | None = None) -> Response:
    """A single resource with its ETag; a 201 also carries Location (RFC 7644 §3.3)."""
    response = with_etag(scim_response(resource, status), version)
    if location:
        response.headers["Location"] = location
    return response


def no_content() -> Response:
    """204 for DELETE (RFC 7644 §3.6), still labelled with the SCIM media type."""
    return Response(status=204, mimetype=SCIM_MEDIA_TYPE)


def request_notes() -> list[str]:
    """Dialect notes of this request, kept on ``g`` for the dialect report (issue 5)."""
    if "scim_notes" not in g:
        g.scim_notes = []
    return g.scim_notes


def read_response(version: str, render: Callable[[], dict[str, Any]]) -> Response:
    """GET of one resource: 304 when If-None-Match names ``version`` (RFC 7644 §3.14)."""
    if not_modified(version):
        return with_etag(Response(status=304, mimetype=SCIM_MEDIA_TYPE), version)
    return resource_response(render(), version)
