"""``attributes`` and ``excludedAttributes`` (RFC 7644 §3.4.2.5, §3.9).

Paths are matched case-insensitively (RFC 7643 §2.1). The views ask :meth:`Projection.wants`
before loading expensive parts (members, groups, grants), so an excluded attribute is never
even queried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.scim.filter_syntax import Resource, schema_of
from app.scim.schema import CORE_GROUP, CORE_USER, SCHEMAS

# (schema URN, attribute, sub-attribute), all lower-case; attribute None = the whole schema.
Path = tuple[str, str | None, str | None]
_COMMON = frozenset({"id", "externalid", "meta", "schemas"})
_KNOWN_URNS = {urn.lower(): urn for urn in SCHEMAS}
_RESOURCES: dict[str, Resource] = {CORE_USER.lower(): "User", CORE_GROUP.lower(): "Group"}


def _bare_name_urn(name: str, core_urn: str) -> str:
    # Resolved as filters and sortBy resolve it: ``department`` is the enterprise one.
    resource = _RESOURCES.get(core_urn)
    found = schema_of(name, resource) if resource is not None else None
    return (found or core_urn).lower()


def parse_path(text: str, core_urn: str) -> Path | None:
    """Split ``urn:...:User:name.givenName`` or ``name.givenName`` into a lower-case Path."""
    text = text.strip().lower()
    if not text:
        return None
    if text.startswith("urn:"):
        if text in _KNOWN_URNS:
            return (text, None, None)
        urn, _, rest = text.rpartition(":")
        attr, _, sub = rest.partition(".")
        if urn == core_urn.lower() or attr in _COMMON:
            urn = core_urn.lower()
        return (urn, attr or None, sub or None)
    attr, _, sub = text.partition(".")
    # A bare extension attribute selects the same as its URN-qualified path, as it does in
    # a filter or sortBy.
    return (_bare_name_urn(attr, core_urn.lower()), attr, sub or None)


def _parse_list(value: str | list[str] | None, core_urn: str) -> frozenset[Path]:
    if not value:
        return frozenset()
    items = value.split(",") if isinstance(value, str) else value
    return frozenset(p for p in (parse_path(i, core_urn) for i in items if isinstance(i, str))
                     if p is not None)


@dataclass(frozen=True)
class Projection:
    """Which attributes a response carries."""

    core_urn: str
    always: frozenset[str]
    include: frozenset[Path]
    exclude: frozenset[Path]

    @classmethod
    def parse(cls, core_urn: str, always: frozenset[str], attributes: Any = None,
              excluded: Any = None) -> Projection:
        """Build from the raw query or SearchRequest values (comma-separated or lists)."""
        return cls(core_urn, always, _parse_list(attributes, core_urn),
                   _parse_list(excluded, core_urn))

    def wants(self, urn: str, attr: str) -> bool:
        """Whether ``attr`` of schema ``urn`` (or any sub-attribute of it) is returned."""
        urn, attr = urn.lower(), attr.lower()
        if urn == self.core_urn.lower() and attr in self.always:
            return True
        if self.include:
            return any(p[0] == urn and (p[1] is None or p[1] == attr) for p in self.include)
        return (urn, attr, None) not in self.exclude and (urn, None, None) not in self.exclude

    def requests(self, urn: str, attr: str, sub: str) -> bool:
        """Whether ``attributes`` names this sub-attribute itself: how a ``returned:
        request`` one is asked for (RFC 7643 §7)."""
        return (urn.lower(), attr.lower(), sub.lower()) in self.include

    def apply(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Filter a fully built resource; ``returned: always`` survives everything."""
        if not self.include and not self.exclude:
            return resource
        out: dict[str, Any] = {}
        core = self.core_urn.lower()
        for key, value in resource.items():
            if key == "schemas":
                out[key] = value
            elif key.lower().startswith("urn:") and isinstance(value, dict):
                urn = key.lower()
                kept = {k: v2 for k, v2 in ((k, self._pick(urn, k, v)) for k, v in value.items())
                        if v2 is not None}
                if kept:
                    out[key] = kept
            else:
                picked = self._pick(core, key, value)
                if picked is not None:
                    out[key] = picked
        # schemas names the schemas of the attributes present (RFC 7643 §3): an extension
        # whose block was projected away is no longer one of them.
        schemas = out.get("schemas")
        if isinstance(schemas, list):
            present = {key.lower() for key in out if key.lower().startswith("urn:")}
            out["schemas"] = [s for s in schemas if not isinstance(s, str)
                              or s.lower() == core or s.lower() in present]
        return out

    def _pick(self, urn: str, key: str, value: Any) -> Any:
        attr = key.lower()
        if urn == self.core_urn.lower() and attr in self.always:
            return value
        # The block's own URN. An unknown extension's URN parses as an attribute of its
        # prefix (``urn:example:custom:2.0`` + ``user``), as nothing tells it is a schema.
        parent, _, last = urn.rpartition(":")
        whole = {(urn, None, None), (parent, last, None), (urn, attr, None)}
        if self.include:
            if not whole.isdisjoint(self.include):
                return value
            subs = {p[2] for p in self.include if p[0] == urn and p[1] == attr and p[2]}
            return _keep_subs(value, subs) if subs else None
        if not whole.isdisjoint(self.exclude):
            return None
        subs = {p[2] for p in self.exclude if p[0] == urn and p[1] == attr and p[2]}
        return _drop_subs(value, subs) if subs else value


def _keep_subs(value: Any, subs: set[str]) -> Any:
    if isinstance(value, dict):
        kept = {k: v for k, v in value.items() if k.lower() in subs}
        return kept or None
    if isinstance(value, list):
        items = [_keep_subs(v, subs) for v in value]
        items = [i for i in items if i]
        return items or None
    return None


def _drop_subs(value: Any, subs: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k.lower() not in subs} or None
    if isinstance(value, list):
        items = [_drop_subs(v, subs) for v in value]
        return [i for i in items if i] or None
    return value
