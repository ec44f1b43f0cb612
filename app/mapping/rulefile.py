"""Rule files: a rule set read from TOML, YAML or JSON, numbers with a fraction exactly.

`roster mapping apply FILE` reads the document here; app/mapping/ruleset.py validates it as
it validates an API body (the same document shape).
"""

from __future__ import annotations

import json
import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from app.errors import InvalidInput


def read_file(path: Path) -> Any:
    """Parse a rule file: TOML (.toml), YAML (.yaml/.yml) or JSON (.json)."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", field="file") from None
    suffix = path.suffix.lower()
    # Numbers with a fraction are read exactly (money amounts), as API bodies are.
    try:
        if suffix == ".toml":
            return tomllib.loads(text.decode(), parse_float=Decimal)
        if suffix == ".json":
            return json.loads(text, parse_float=Decimal)
        if suffix in (".yaml", ".yml"):
            return yaml.load(text, Loader=_ExactLoader)  # noqa: S506 - a SafeLoader
    except (ValueError, UnicodeDecodeError, yaml.YAMLError, InvalidOperation) as exc:
        kind = suffix[1:].upper().replace("YML", "YAML")
        raise InvalidInput(f"{path} is not valid {kind}: {exc}", field="file") from None
    raise InvalidInput(f"{path}: rule files end in .toml, .yaml, .yml or .json", field="file")


class _ExactLoader(yaml.SafeLoader):
    """YAML's safe loader, with floats read as Decimal where they are plain decimals."""


def _yaml_decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal | float:
    text = str(loader.construct_scalar(node)).replace("_", "")
    try:
        return Decimal(text)
    except InvalidOperation:  # .inf, .nan, 1:30.5 (sexagesimal): YAML's own reading
        return float(loader.construct_yaml_float(node))


_ExactLoader.add_constructor("tag:yaml.org,2002:float", _yaml_decimal)
