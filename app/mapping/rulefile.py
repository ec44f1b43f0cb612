"""Rule files: a rule set read from TOML, YAML or JSON, numbers with a fraction exactly.

`roster mapping apply FILE` reads the document here; app/mapping/ruleset.py validates it as
it validates an API body (the same document shape).
"""

from __future__ import annotations

import json
import re
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
    except RecursionError:  # 100,000 '[': past the parser's recursion limit (a traceback)
        raise InvalidInput(f"{path} is nested too deeply to be a rule file",
                           field="file") from None
    raise InvalidInput(f"{path}: rule files end in .toml, .yaml, .yml or .json", field="file")


class _ExactLoader(yaml.SafeLoader):
    """YAML's safe loader, with numbers read as their digits say: floats as Decimal where
    they are plain decimals, ``0750`` as 750 (YAML 1.2 §10.3.2; YAML 1.1 read octal 488),
    and sexagesimal ``1:30`` (YAML 1.1's 90) as the text it is, never a number."""


def _yaml_decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal | float | str:
    text = str(loader.construct_scalar(node)).replace("_", "")
    if ":" in text:  # 1:30.5 was 90.5: a limit of "1:30.5" is refused, never 90.5
        return str(node.value)
    try:
        return Decimal(text)
    except InvalidOperation:  # .inf, .nan: YAML's own reading (refused as amounts)
        return float(loader.construct_yaml_float(node))


def _yaml_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | str:
    text = str(loader.construct_scalar(node)).replace("_", "")
    if _DECIMAL_DIGITS.match(text):  # an amount 0750 was 488 EUR
        return int(text)
    if ":" in text:  # sexagesimal 1:30 was 90
        return str(node.value)
    return int(loader.construct_yaml_int(node))  # 0x1F4, 0b101: YAML's reading, exact


_DECIMAL_DIGITS = re.compile(r"[-+]?[0-9]+\Z")
_ExactLoader.add_constructor("tag:yaml.org,2002:float", _yaml_decimal)
_ExactLoader.add_constructor("tag:yaml.org,2002:int", _yaml_int)
