"""The /api/v1 frame: one decorator authenticates, authorizes, scopes, validates and
opens the transaction; views receive an :class:`ApiContext` and return data.

How to add a route (in a module of ``app/api/routes/``; every module there is imported
when the blueprint is built, so nothing else needs editing)::

    from app.api.frame import ApiContext, api_route
    from app.api.views import bp

    @api_route(bp, "/orgs/<org_id>/widgets", methods=["GET"], permission="widgets:read",
               summary="List widgets", query=WidgetArgs, response=WidgetSchema,
               paginated=True, tags=["widgets"])
    def list_widgets(ctx: ApiContext) -> Page:
        stmt = select(Widget).where(Widget.organization_id == ctx.org.id)
        return ctx.paginate(stmt, (Widget.created_at, Widget.id))

- ``permission`` must be declared in ``app/api/permissions.py`` (one table for all roles).
- ``<org_id>`` in the rule (id or slug) is resolved to ``ctx.org``; an org-bound key asking
  for another organization gets 404. For objects found by their own id, call
  ``ctx.check_org(obj.organization_id, <the NotFound its absence raises>)``; for
  ``?organization=`` filters use
  ``ctx.org_filter(value)``.
- ``query`` / ``body`` schemas are loaded into ``ctx.args`` / ``ctx.body`` (400 naming the
  field otherwise); ``response`` dumps what the view returns (``paginated=True``: a
  :class:`~app.api.pagination.Page`). GET runs in a read-only transaction; anything else
  commits when the view returns. Changes must be audited with ``actor=ctx.actor``.
- Raise domain errors (app.errors) or ``ApiProblem``; the blueprint renders problem JSON.
- tests/api/test_authorization.py checks every route against every role (401/403/404);
  add the tenant's real id for a new path parameter to its ``samples`` fixture so the
  cross-organization 404 is checked for your route too.
- Raw responses (files, streams): return a flask ``Response`` and declare
  ``produces={"text/csv": "..."}`` so the OpenAPI description documents them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from marshmallow import Schema
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from app.api.errors import ApiProblem
from app.api.pagination import DEFAULT_LIMIT, Page, list_tag, paginate
from app.api.permissions import PERMISSIONS, allows
from app.api.schemas import page_schema
from app.audit import Actor
from app.bearer import bearer_credential
from app.db import Database
from app.directory.apikeys import KeyIdentity, authenticate, touch_key
from app.directory.organizations import get_organization, missing_organization
from app.errors import NotFound
from app.json_input import (
    PATH_NOT_UTF8,
    QUERY_NOT_UTF8,
    BodyTooLarge,
    BodyUnreadable,
    JsonInputError,
    parse_json,
    path_not_utf8,
    query_not_utf8,
    read_body,
    unsupported_coding,
)
from app.json_output import dumps
from app.models import Organization

READ_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class RouteSpec:
    """What a route declares: the source of both enforcement and the OpenAPI description."""

    endpoint: str
    rule: str
    methods: tuple[str, ...]
    permission: str | None
    summary: str
    description: str = ""
    tags: tuple[str, ...] = ()
    query: type[Schema] | None = None
    body: type[Schema] | None = None
    response: type[Schema] | None = None
    status: int = 200
    paginated: bool = False
    # Raw responses (the view returns a flask Response): media type -> description.
    produces: tuple[tuple[str, str], ...] = ()
    # Headers of the success response worth documenting: name -> description.
    headers: tuple[tuple[str, str], ...] = ()
    # The frame's transaction is read-only; the view writes in its own short transaction.
    own_writes: bool = False
    # Problem statuses the view itself may answer, beyond those its shape implies (a body
    # can be a 400, 409 or 413): a POST without a body that refuses with 409, say.
    errors: tuple[int, ...] = ()

    @property
    def response_schema(self) -> type[Schema] | None:
        """The schema of the response body (a page schema for lists)."""
        if self.response is None:
            return None
        return page_schema(self.response) if self.paginated else self.response

    @property
    def org_scoped(self) -> bool:
        """Whether the rule names an organization (``<org_id>``)."""
        return "<org_id>" in self.rule


# endpoint -> declaration; every /api/v1 rule in the URL map must be in here (tested).
ROUTES: dict[str, RouteSpec] = {}


@dataclass
class ApiContext:
    """What a view gets: the open session, the caller, its scope and the loaded input."""

    session: Session
    key: KeyIdentity
    actor: Actor
    org: Organization | None = None
    args: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def scope_org_id(self) -> str | None:
        """The only organization this key may see, or None for an operator key."""
        return self.key.organization_id

    def check_org(self, organization_id: str | None, missing: NotFound) -> None:
        """Another organization's data is ``missing``: the very 404 its absence gives (not
        403, nor a 404 of its own), so its existence is not revealed."""
        if self.scope_org_id is not None and organization_id != self.scope_org_id:
            raise missing

    def paginate(self, stmt: Select[Any], order: Sequence[InstrumentedAttribute[Any]], *,
                 keyed: bool = False, descending: bool = False) -> Page:
        """One page of ``stmt`` by ``order`` with this request's ``limit`` and ``cursor``;
        the cursors name this route and organization, and continue no other list (all of
        them order by creation time and id: another's cursor started a page mid-list)."""
        tag = list_tag(request.endpoint or "", self.org.id if self.org is not None else "")
        return paginate(self.session, stmt, order, limit=self.args.get("limit", DEFAULT_LIMIT),
                        cursor=self.args.get("cursor"), tag=tag, keyed=keyed,
                        descending=descending)

    def org_filter(self, requested: str | None) -> str | None:
        """Resolve an ``organization`` filter (id or slug) within the key's scope."""
        if requested is None:
            return self.scope_org_id
        org = get_organization(self.session, requested)
        self.check_org(org.id, missing_organization(requested))
        return org.id


View = Callable[..., Any]


def api_route(bp: Blueprint, rule: str, *, methods: Iterable[str] = ("GET",),
              permission: str | None, summary: str, description: str = "",
              tags: Iterable[str] = (), query: type[Schema] | None = None,
              body: type[Schema] | None = None, response: type[Schema] | None = None,
              status: int = 200, paginated: bool = False, public: bool = False,
              produces: Mapping[str, str] | None = None,
              headers: Mapping[str, str] | None = None,
              own_writes: bool = False, errors: Iterable[int] = ()) -> Callable[[View], View]:
    """Declare and register an /api/v1 route; ``public=True`` routes need no key.

    ``produces`` declares a route whose view returns its own ``Response`` (a file, a
    stream) as ``{media type: description}``; it is documented with status ``status``,
    and with ``headers`` (``{name: description}``) when its answer carries some.
    ``own_writes=True``: the frame's transaction is read-only and the view opens its own
    write transaction after slow outbound I/O (an https fetch), because SQLite has a
    single writer and a write transaction must never wait on the network.
    """
    if permission is None and not public:
        raise ValueError(f"{rule}: declare a permission (or public=True)")
    if permission is not None and permission not in PERMISSIONS:
        raise ValueError(f"{rule}: permission {permission!r} is not in app/api/permissions.py")

    def decorate(view: View) -> View:
        spec = RouteSpec(
            endpoint=f"{bp.name}.{view.__name__}", rule=f"{bp.url_prefix or ''}{rule}",
            methods=tuple(m.upper() for m in methods), permission=permission,
            summary=summary, description=description or (view.__doc__ or "").strip(),
            tags=tuple(tags), query=query, body=body, response=response, status=status,
            paginated=paginated, produces=tuple((produces or {}).items()),
            headers=tuple((headers or {}).items()), own_writes=own_writes, errors=tuple(errors),
        )
        if spec.endpoint in ROUTES and ROUTES[spec.endpoint] != spec:
            raise ValueError(f"endpoint {spec.endpoint} is declared twice")
        ROUTES[spec.endpoint] = spec

        @functools.wraps(view)
        def handler(**path: str) -> Response:
            return _dispatch(spec, view, path)

        bp.add_url_rule(rule, endpoint=view.__name__, view_func=handler,
                        methods=list(spec.methods))
        return view

    return decorate


def _dispatch(spec: RouteSpec, view: View, path: dict[str, str]) -> Response:
    db: Database = current_app.extensions["roster.db"]
    if spec.permission is None:
        return _render(spec, view(**path))
    key = _authenticate(db)
    if not allows(key.role, spec.permission):
        raise ApiProblem(403, f"the {key.role.value} role may not use this endpoint "
                              f"(needs {spec.permission})")
    actor = Actor(type="api_key", id=key.id, request_id=g.get("request_id"),
                  ip=request.remote_addr, user_agent=request.user_agent.string or None)
    if path_not_utf8(request.environ):
        raise ApiProblem(400, PATH_NOT_UTF8, errors=[{"field": "path", "detail": "not UTF-8"}])
    _reject_nul(path, "")
    _reject_nul(request.args.to_dict(), "")
    with db.transaction(readonly=request.method in READ_METHODS or spec.own_writes) as session:
        ctx = ApiContext(session=session, key=key, actor=actor)
        # Scope before validation: another organization's URL is a 404 whatever the input.
        if spec.org_scoped:
            ctx.org = _scoped_org(ctx, path.pop("org_id"))
        ctx.args = _load(spec.query, _query_args()) if spec.query else _no_query()
        if request.method not in READ_METHODS:
            _check_preconditions()
        if spec.body:
            body = _json_body()
            _reject_nul(body, "")
            ctx.body = _load(spec.body, body)
        elif request.method not in READ_METHODS:
            _no_body()
        # Dumped inside the transaction so lazy attributes can still load.
        response = _render(spec, view(ctx, **path))
    # A key's answers are private, some a secret shown once (a new API key, SCIM token or
    # directory's first token): no cache may keep them (RFC 9111 §5.2.2.5; RFC 6749 §5.1
    # asks the same of token responses).
    response.headers["Cache-Control"] = "no-store"
    return response


def _authenticate(db: Database) -> KeyIdentity:
    """Bearer key (RFC 6750 §2.1) -> identity; records the use at most once a minute."""
    credential = bearer_credential(request.headers.get("Authorization"))
    if credential is None:
        raise ApiProblem(401, "send an API key as 'Authorization: Bearer rk_...'; "
                              "create one with `roster apikey create`")
    with db.transaction(readonly=True) as session:
        key = authenticate(session, credential)
    g.api_key_authenticated = True  # app/api/authlimit.py: a key known to be good
    if key.needs_touch:
        with db.transaction() as session:
            touch_key(session, key.id)
    return key


def _scoped_org(ctx: ApiContext, ref: str) -> Organization:
    org = get_organization(ctx.session, ref)
    # Same answer as for a missing organization: existence is not revealed.
    ctx.check_org(org.id, missing_organization(ref))
    return org


def _raw_body() -> bytes:
    """The request's body, within app.max_body_bytes (413 beyond, a problem if unreadable)."""
    limit = current_app.config["ROSTER"]["app"]["max_body_bytes"]
    try:
        return read_body(request, limit)
    except BodyTooLarge:
        raise ApiProblem(413, f"the request body is larger than {limit} bytes") from None
    except BodyUnreadable as exc:
        raise ApiProblem(exc.status, exc.detail) from None


def _json_body() -> Any:
    """The JSON body; an empty body is an empty object. Malformed JSON, nesting too deep,
    NUL or an unpaired surrogate in a string are 400 problems (app/json_input.py)."""
    raw = _raw_body()
    if not raw:
        return {}
    if not request.is_json:
        raise ApiProblem(415, "send the body as JSON with 'Content-Type: application/json'")
    coding = unsupported_coding(request.headers.get("Content-Encoding"))
    if coding:
        raise ApiProblem(415, f"Content-Encoding {coding!r} is not supported; send the body "
                              "uncompressed")
    try:
        # Exact numbers: a money amount sent as a JSON number keeps its digits (0.1, 1e400
        # is refused by its field, not turned into infinity); no body field stores a float.
        return parse_json(raw, exact=True)
    except JsonInputError as exc:
        field = exc.where or "body"
        raise ApiProblem(400, exc.detail, errors=[{
            "field": field, "detail": "not valid JSON" if exc.syntax else "not storable text",
        }]) from None


def _check_preconditions() -> None:
    """A write's ``If-Match`` and ``If-None-Match`` (RFC 9110 §13.1.1, §13.1.2), before any
    of its content is read. /api/v1 sends no entity tags, so an ``If-Match`` listing some can
    match no representation, and the server MUST NOT perform the method: 412. ``*`` holds
    when the target exists; one that does not is the view's 404 (§13.2.1: the answer without
    the precondition wins). An empty field lists nothing and is ignored, as SCIM ignores it
    (app/scim/etag.py). ``If-None-Match: *`` is false where the target has a representation,
    and every /api/v1 write addresses an existing collection or resource (none creates one at
    its own URL): 412, as SCIM answers it; a list of entity tags matches none and holds."""
    header = request.headers.get("If-Match", "").strip(" \t")
    if header and header != "*":
        raise ApiProblem(412, "If-Match names an entity tag, and /api/v1 resources have none "
                              "(no ETag is sent): the condition cannot hold; send the "
                              "request without If-Match, or with If-Match: *")
    if any(part.strip(" \t") == "*"
           for part in request.headers.get("If-None-Match", "").split(",")):
        raise ApiProblem(412, "If-None-Match: * cannot hold: the target of every /api/v1 "
                              "write exists (RFC 9110 section 13.1.2); send the request "
                              "without If-None-Match")


def _no_query() -> dict[str, Any]:
    """A route without query parameters refuses one by name, as a route with some refuses
    an unknown one (StrictSchema), rather than answer as if it had not been sent."""
    if query_not_utf8(request.query_string):
        raise ApiProblem(400, QUERY_NOT_UTF8, errors=[{"field": "query", "detail": "not UTF-8"}])
    names = sorted(set(request.args))
    if names:
        raise ApiProblem(400, "this endpoint takes no query parameter: " + ", ".join(names),
                         errors=[{"field": name, "detail": "Unknown field."} for name in names])
    return {}


def _no_body() -> None:
    """A write route without a body schema refuses a body, rather than ignore what it asks
    (an expiry sent with a token rotation, say); an empty body or ``{}`` is no body."""
    raw = _raw_body()
    if not raw.strip():
        return
    try:
        empty = request.is_json and parse_json(raw, exact=True) == {}
    except JsonInputError:
        empty = False
    if not empty:
        raise ApiProblem(400, "this endpoint takes no request body; send none (or {})",
                         errors=[{"field": "body", "detail": "no body expected"}])


def _query_args() -> dict[str, str]:
    """The query string as one value per name; a name given twice (``?limit=2&limit=3``)
    is a 400 naming it, as SCIM's are (app/scim/http.py ``query_args``): taking the first
    alone would silently ignore the second."""
    if query_not_utf8(request.query_string):
        raise ApiProblem(400, QUERY_NOT_UTF8, errors=[{"field": "query", "detail": "not UTF-8"}])
    repeated = sorted({name for name in request.args if len(request.args.getlist(name)) > 1})
    if repeated:
        raise ApiProblem(400, "query parameter given more than once: " + ", ".join(repeated),
                         errors=[{"field": name, "detail": "given more than once"}
                                 for name in repeated])
    return request.args.to_dict()


def _reject_nul(value: Any, where: str) -> None:
    """NUL cannot be stored in PostgreSQL text: refuse it anywhere in the input (400)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ApiProblem(400, f"{where or 'the request'} contains a NUL character",
                             errors=[{"field": where or "body", "detail": "NUL is not allowed"}])
    elif isinstance(value, Mapping):
        for key, item in value.items():
            name = f"{where}.{key}" if where else str(key)
            _reject_nul(key, name)
            _reject_nul(item, name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _reject_nul(item, f"{where}.{index}" if where else str(index))


def _load(schema: type[Schema], data: Any) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ApiProblem(400, "the body must be a JSON object",
                         errors=[{"field": "body", "detail": "expected an object"}])
    return schema().load(data)


def _render(spec: RouteSpec, result: Any) -> Response:
    if isinstance(result, Response):
        return result
    schema = spec.response_schema
    if schema is None or result is None:
        return Response(status=204 if schema is None else spec.status)
    if spec.paginated:
        if not isinstance(result, Page):
            raise TypeError(f"{spec.endpoint} is paginated and must return a Page")
        result = {"items": result.items, "next_cursor": result.next_cursor}
    payload = schema().dump(result)
    return Response(dumps(payload), status=spec.status, mimetype="application/json")
