"""Shared marshmallow schemas of /api/v1: problems, list arguments, pages.

Route modules declare their own request and response schemas next to their views and
reuse these for the common parts, so the OpenAPI description is generated from one source.
"""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from app.api.pagination import DEFAULT_LIMIT, MAX_LIMIT
from app.db import utcnow
from app.directory.names import NAME_MAX
from app.visible_names import name_problem, text_problem


class StrictSchema(Schema):
    """Unknown fields are errors that name the field, never silently dropped."""

    class Meta:
        """Reject unknown keys."""

        unknown = RAISE


class JsonBoolean(fields.Boolean):
    """A boolean of a JSON body: ``true`` or ``false`` only (RFC 8259 §3). marshmallow's
    Boolean also takes 1, 0, "yes", "off" and "0", so a mistyped ``"enabled": "0"`` was
    read as a choice; query strings, which have no booleans, keep ``fields.Boolean``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class NameLength(validate.Length):
    """A name an operator or admin gives (organization, unit, directory, connection, role,
    API key): 1-``max`` characters, not whitespace only, no control character and some
    visible one (app/visible_names.py), refused as app/directory/names.py
    and the CLI's ``--name`` refuse it. A Length, so OpenAPI still says minLength 1;
    ``"name": ""`` was "no name" to some endpoints (an organization named after its slug)
    and "Length must be between 1 and 200." to others."""

    def __init__(self, max: int = NAME_MAX, *, optional: bool = False) -> None:
        super().__init__(min=1, max=max)
        self.optional = optional

    def __call__(self, value: Any) -> Any:
        """``value`` if it is a usable name, else a ValidationError saying why."""
        if not value:
            hint = " (leave the field out for its default)" if self.optional else ""
            raise ValidationError(f"must not be empty{hint}")
        if not value.strip():
            raise ValidationError("must not be blank (whitespace only)")
        if (problem := name_problem(value)) is not None:
            raise ValidationError(f"must {problem}")
        if self.max is not None and len(value) > self.max:
            raise ValidationError(f"is longer than {self.max} characters "
                                  f"({len(value)} given)")
        return value


class FreeText(validate.Validator):
    """Free text an operator or admin types (a role's description, a reason): one line,
    with no control character (line breaks and tabs included), no bidirectional override
    or isolate, and a visible character unless empty (app/visible_names.py,
    ``text_problem``). Length is checked by its own validator."""

    def __call__(self, value: Any) -> Any:
        """``value`` if it is usable text, else a ValidationError saying why."""
        if (problem := text_problem(value)) is not None:
            raise ValidationError(f"must {problem}")
        return value


_DIGITS = re.compile(r"-?[0-9]{1,4000}\Z")  # int() reads at most 4,300 digits


class QueryInteger(fields.Integer):
    """An integer of a query string: ASCII decimal digits with an optional '-', as /scim
    reads its integers. marshmallow's Integer goes through int(), which also takes "1_0"
    (10), "+1", surrounding spaces and other scripts' digits ("\uff11")."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and not _DIGITS.match(value):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


class FieldErrorSchema(Schema):
    """One invalid field of a request."""

    field = fields.String(required=True, metadata={"description": "Dotted path of the field."})
    detail = fields.String(required=True)


class ProblemSchema(Schema):
    """RFC 9457 problem details, with the request id and field errors as extensions."""

    type = fields.String(required=True, metadata={"format": "uri"})
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String(required=True)
    instance = fields.String()
    request_id = fields.String(allow_none=True)
    errors = fields.List(fields.Nested(FieldErrorSchema))


class PageArgs(StrictSchema):
    """``limit`` and ``cursor`` of every list."""

    limit = QueryInteger(load_default=DEFAULT_LIMIT,
                           validate=validate.Range(min=1, max=MAX_LIMIT),
                           metadata={"description": f"Page size (1-{MAX_LIMIT})."})
    cursor = fields.String(validate=validate.Length(min=1, max=500), metadata={
        "description": "The next_cursor of the previous page; omit for the first page."})


class TimeWindowArgs(StrictSchema):
    """``since`` (inclusive) and ``until`` (exclusive): an instant (RFC 3339), a time
    without an offset read as UTC; ``until`` before ``since`` is a 400 naming it."""

    since = fields.AwareDateTime(default_timezone=UTC, metadata={
        "description": "Only items at or after this time (RFC 3339)."})
    until = fields.AwareDateTime(default_timezone=UTC, metadata={
        "description": "Only items before this time (RFC 3339)."})

    @validates_schema
    def _ordered(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise ValidationError("until must not be before since", field_name="until")


class TimeRangeArgs(PageArgs, TimeWindowArgs):
    """Lists of things that happened: ``since`` (inclusive) and ``until`` (exclusive)."""


class CredentialSchema(Schema):
    """What every listed secret shows instead of itself: prefix, state and lifetime."""

    prefix = fields.String(required=True)
    state = fields.Method("_state", required=True,
                          metadata={"type": "string", "enum": ["valid", "revoked", "expired"]})
    created_at = fields.AwareDateTime(required=True)
    last_used_at = fields.AwareDateTime(required=True, allow_none=True)
    expires_at = fields.AwareDateTime(required=True, allow_none=True)
    revoked_at = fields.AwareDateTime(required=True, allow_none=True)

    def _state(self, credential: Any) -> str:
        if credential.revoked_at is not None:
            return "revoked"
        expired = credential.expires_at is not None and credential.expires_at <= utcnow()
        return "expired" if expired else "valid"


def page_schema(item: type[Schema]) -> type[Schema]:
    """The response schema of a list of ``item``: ``{items: [...], next_cursor}``."""
    name = item.__name__.removesuffix("Schema") + "PageSchema"
    cached = _PAGES.get(name)
    if cached is not None:
        return cached
    page = type(name, (Schema,), {
        "items": fields.List(fields.Nested(item), required=True),
        "next_cursor": fields.String(required=True, allow_none=True, metadata={
            "description": "Pass as ?cursor= to get the next page; null on the last page."}),
        "__doc__": f"One page of {item.__name__.removesuffix('Schema')} items.",
    })
    _PAGES[name] = page
    return page


_PAGES: dict[str, type[Schema]] = {}
