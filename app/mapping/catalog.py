"""The closed permission vocabulary, typed role parameters, and the role catalog file."""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.directory.names import checked_name
from app.errors import InvalidInput
from app.mapping.money import check_money, mixed_currencies, shown
from app.visible_names import text_problem

PERMISSIONS: frozenset[str] = frozenset({
    "users.manage", "payment_methods.manage", "addresses.manage", "addresses.use",
    "orders.place", "orders.view_own", "orders.view_unit", "orders.view_all",
    "orders.manage_all", "orders.approve", "invoices.view", "statements.view",
    "reports.view", "deliveries.receive", "quotes.request", "catalog.view_prices",
})
PARAMETER_TYPES = ("money", "int", "bool")
# The integers every JSON reader takes exactly (RFC 7493 §2.2, I-JSON): the portal reads the
# parameters of its grants from events and ID tokens, often as IEEE 754 doubles.
INT_LIMIT = 2**53 - 1
# Role keys and parameter names: ASCII, so every reader of claims and events spells them
# alike (str.isalnum and str.islower also took "rôle" and fullwidth digits).
KEY = re.compile(r"[a-z0-9_]{1,64}\Z")
_KEY_RULE = "lower-case letters, digits and _, 1-64 long"


@dataclass(frozen=True)
class RoleSpec:
    """A role as declared in config/roles.toml or by an operator."""

    key: str
    name: str
    description: str = ""
    permissions: tuple[str, ...] = ()
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)


def check_value(kind: str, value: Any, where: str) -> Any:
    """Validate one parameter value of the given type; returns its canonical form."""
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        if -INT_LIMIT <= value <= INT_LIMIT:
            return value
        raise InvalidInput(f"{where}: an int parameter lies between -{INT_LIMIT} and "
                           f"{INT_LIMIT} (RFC 7493 §2.2), got {shown(value)}", field=where)
    if kind == "money":
        return check_money(value, where)
    raise InvalidInput(f"{where}: expected a {kind} value, got {shown(value)}", field=where)


DESCRIPTION_MAX = 1000  # roles.description


def checked_description(spec: RoleSpec) -> None:
    """A role's description is free text (app/visible_names.py, ``text_problem``): empty,
    or one line of at most 1000 characters with a visible one, no control character and no
    bidirectional override; the API, `roster mapping role add --description` and the
    catalog file are held to it alike."""
    if not isinstance(spec.description, str):
        raise InvalidInput(f"role {spec.key}: description must be a string", field="description")
    if len(spec.description) > DESCRIPTION_MAX:
        raise InvalidInput(f"role {spec.key}: description is longer than {DESCRIPTION_MAX} "
                           f"characters ({len(spec.description)} given)", field="description")
    if (problem := text_problem(spec.description)) is not None:
        raise InvalidInput(f"role {spec.key}: description must {problem}", field="description")


def validate_spec(spec: RoleSpec) -> RoleSpec:
    """Reject unknown permissions, unknown parameter types and badly typed defaults."""
    if not KEY.match(spec.key):
        raise InvalidInput(f"role key {spec.key!r} must be {_KEY_RULE}", field="key")
    checked_name(spec.name, f"role {spec.key}: name")
    checked_description(spec)
    unknown = sorted(set(spec.permissions) - PERMISSIONS)
    if unknown:
        raise InvalidInput(f"role {spec.key}: unknown permissions {', '.join(unknown)}",
                           field="permissions")
    repeated = sorted(p for p, n in Counter(spec.permissions).items() if n > 1)
    if repeated:
        raise InvalidInput(f"role {spec.key}: permissions given more than once: "
                           f"{', '.join(repeated)}", field="permissions")
    params: dict[str, dict[str, Any]] = {}
    for name, decl in spec.parameters.items():
        if not KEY.match(name):
            # A blank name listed as nothing, a dotted one blurred the error paths
            # (parameters.a.b.default), and the portal reads these names as claim keys.
            raise InvalidInput(f"role {spec.key}: parameter name {name!r} must be {_KEY_RULE}",
                               field="parameters")
        if not isinstance(decl, dict):
            raise InvalidInput(f"role {spec.key}: parameter {name} must be {{type, default}}",
                               field=f"parameters.{name}")
        extra = sorted(set(decl) - {"type", "default"})
        if extra:  # dropped silently before: a typo ("defualt") lost the default
            raise InvalidInput(f"role {spec.key}: parameter {name} has unknown keys "
                               f"{', '.join(extra)} (a parameter is {{type, default}})",
                               field=f"parameters.{name}")
        kind = decl.get("type")
        if kind not in PARAMETER_TYPES:
            raise InvalidInput(f"role {spec.key}: parameter {name} has unknown type {kind!r}",
                               field=f"parameters.{name}")
        default = check_value(kind, decl.get("default"), f"parameters.{name}.default")
        params[name] = {"type": kind, "default": default}
    mixed = mixed_currencies({n: d["default"] for n, d in params.items() if d["type"] == "money"})
    if mixed:  # every grant of the role without a rule's amounts would mix them
        raise InvalidInput(f"role {spec.key}: money defaults must be in one currency, got "
                           f"{mixed}", field="parameters")
    return RoleSpec(spec.key, spec.name, spec.description, tuple(spec.permissions), params)


_ROLE_KEYS = frozenset({"name", "description", "permissions", "parameters"})


def load_catalog(path: Path) -> list[RoleSpec]:
    """Read and validate a role catalog file (config/roles.toml). A key no role takes is
    refused naming it: ``permision`` was ignored and made a role without permissions."""
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    extra = sorted(set(data) - {"roles"})
    if extra:
        raise InvalidInput(f"{path}: unknown key {extra[0]} (the file holds [roles.KEY] "
                           "tables)", field=extra[0])
    roles = data.get("roles", {})
    if not isinstance(roles, dict):
        raise InvalidInput(f"{path}: roles must be a table of roles", field="roles")
    specs = []
    for key, body in roles.items():
        if not isinstance(body, dict):
            raise InvalidInput(f"{path}: role {key} must be a table", field=f"roles.{key}")
        unknown = sorted(set(body) - _ROLE_KEYS)
        if unknown:
            raise InvalidInput(f"{path}: role {key}: unknown key {unknown[0]}; a role takes "
                               f"{', '.join(sorted(_ROLE_KEYS))}",
                               field=f"roles.{key}.{unknown[0]}")
        specs.append(validate_spec(RoleSpec(
            key=key, name=body.get("name", key), description=body.get("description", ""),
            permissions=tuple(body.get("permissions", ())),
            parameters=dict(body.get("parameters", {})),
        )))
    return specs
