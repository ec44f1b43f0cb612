"""Layering (DESIGN.md): parse every import under app/ and fail on an arrow pointing outward."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"

# Layer of each top-level module or package under app/; higher may import lower, never up.
LAYERS: dict[str, int] = {
    # 0: foundations
    "db": 0, "sql": 0, "errors": 0, "settings": 0, "planner": 0, "sqlite_writers": 0,
    "sqlite_connections": 0, "ids": 0, "futex": 0, "pool_ping": 0, "json_input": 0,
    "json_output": 0, "bearer": 0, "fold_clashes": 0, "log_throttle": 0, "engine": 0,
    "db_errors": 0, "settings_checks": 0, "settings_keys": 0, "folding": 0, "url_masks": 0,
    "http_deadline": 0, "public_address": 0, "visible_names": 0,
    "form_input": 0,
    # 1: models and pure rules
    "models": 1,
    # 2: domain services
    "directory": 2, "mapping": 2, "lifecycle": 2, "audit": 2, "events": 2,
    # 3: protocol adapters and infrastructure glue
    "scim": 3, "sso": 3, "api": 3, "ops": 3, "observability": 3, "migrate": 3,
    # 4: entry points
    "cli": 4, "__init__": 4,
}
DOMAIN = {"directory", "mapping", "lifecycle", "audit", "events"}
WEB = {"flask", "werkzeug"}
PURE = {"app/mapping/rules.py"}


def _modules() -> list[Path]:
    return sorted(APP.rglob("*.py"))


def _top(path: Path) -> str:
    rel = path.relative_to(APP)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _app_target(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "app":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_top_level_module_has_a_layer():
    """A new package must be placed in a layer before it can be used."""
    unknown = {_top(p) for p in _modules()} - set(LAYERS)
    assert not unknown, f"add these to LAYERS in {__file__}: {sorted(unknown)}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(APP.parent)))
def test_imports_point_inward(path):
    """No module imports a module of a higher (outer) layer."""
    source = _top(path)
    for name in _imports(path):
        target = _app_target(name)
        if target is None or target == source:
            continue
        assert LAYERS[target] <= LAYERS[source], f"{path.name}: {source} must not import {name}"


@pytest.mark.parametrize("path", [p for p in _modules() if _top(p) in DOMAIN],
                         ids=lambda p: str(p.relative_to(APP.parent)))
def test_domain_never_imports_flask(path):
    """Domain packages are web-free: configuration reaches them as arguments."""
    for name in _imports(path):
        assert name.split(".")[0] not in WEB, f"{path} imports {name}"


def test_scim_and_sso_never_import_each_other():
    """The two protocol adapters are independent."""
    for path in _modules():
        source = _top(path)
        if source in ("scim", "sso"):
            other = "sso" if source == "scim" else "scim"
            assert all(_app_target(n) != other for n in _imports(path)), path


def test_pure_rules_touch_no_database_or_web():
    """mapping/rules.py is a pure function: no SQLAlchemy, no Flask, no app services."""
    for rel in PURE:
        path = APP.parent / rel
        if not path.exists():
            continue
        for name in _imports(path):
            assert name.split(".")[0] not in {"sqlalchemy", *WEB}, name
            target = _app_target(name)
            assert target in (None, "errors", "mapping", "folding", "visible_names"), name
