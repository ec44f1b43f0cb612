"""Rule files: a rule set read from TOML, YAML or JSON, numbers with a fraction exactly.

`roster mapping apply FILE` reads the document here; app/mapping/ruleset.py validates it as
it validates an API body (the same document shape). What an API body may not hold
(app/json_input.py) a file may not either: a key given twice in one table (JSON's and
PyYAML's readers kept the last silently, so ``role = "buyer"`` followed by ``role =
"administrator"`` granted the second; TOML refuses it itself), a NUL character, which
PostgreSQL cannot store, or an unpaired UTF-16 surrogate (``"\\ud800"``), which no UTF-8
encoder takes: the apply ended in a traceback.
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
from app.json_input import JsonInputError, check_strings


def read_file(path: Path) -> Any:
    """Parse a rule file: TOML (.toml), YAML (.yaml/.yml) or JSON (.json)."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", field="file") from None
    document = _parse(path, text)
    try:
        check_strings(document)
    except JsonInputError as exc:
        raise InvalidInput(f"{path}: {exc.detail}", field=exc.where or "file") from None
    return document


def _parse(path: Path, text: bytes) -> Any:
    suffix = path.suffix.lower()
    # Numbers with a fraction are read exactly (money amounts), as API bodies are.
    try:
        if suffix == ".toml":
            return tomllib.loads(text.decode(), parse_float=Decimal)
        if suffix == ".json":
            return json.loads(text, parse_float=Decimal, object_pairs_hook=_unique_pairs)
        if suffix in (".yaml", ".yml"):
            return _load_yaml(text)
    except (ValueError, UnicodeDecodeError, yaml.YAMLError, InvalidOperation) as exc:
        kind = suffix[1:].upper().replace("YML", "YAML")
        raise InvalidInput(f"{path} is not valid {kind}: {exc}", field="file") from None
    except RecursionError:  # 100,000 '[': past the parser's recursion limit (a traceback)
        raise InvalidInput(f"{path} is nested too deeply to be a rule file",
                           field="file") from None
    raise InvalidInput(f"{path}: rule files end in .toml, .yaml, .yml or .json", field="file")


# The values a YAML document may stand for, each alias counted where it is used: a rule
# file holds at most 1,000 rules of a few dozen values each.
MAX_YAML_VALUES = 100_000


def _load_yaml(text: bytes) -> Any:
    """The YAML document, built only once its aliases are known to end and to stand for a
    bounded number of values (an alias inside the node it names made a list that holds
    itself, and nine lines of aliases of aliases a billion strings: the walks over the
    document never ended)."""
    loader = _ExactLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_aliases(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_aliases(root: yaml.Node) -> None:
    """Raise a YAMLError for a node that holds itself, or for more than MAX_YAML_VALUES
    values once every alias is expanded. Iterative: a deep document is the parser's to
    refuse, not a RecursionError here."""
    sizes: dict[int, int] = {}  # expanded values under each finished node
    open_nodes: set[int] = set()  # the nodes on the path from the root
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        children = _children(node)
        if finished:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] > MAX_YAML_VALUES:
                raise yaml.YAMLError(f"its aliases stand for more than {MAX_YAML_VALUES} "
                                     "values (a rule file is far smaller)")
        elif id(node) in open_nodes:
            raise yaml.YAMLError(f"an alias stands for a node that holds it (line "
                                 f"{node.start_mark.line + 1}): it would never end")
        elif id(node) not in sizes:
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in children)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are unique (RFC 8259 §4), as API bodies must be."""
    seen: set[str] = set()
    for key, _value in pairs:
        if key in seen:
            raise ValueError(f"the key {key[:80]!r} is given twice in one object")
        seen.add(key)
    return dict(pairs)


class _ExactLoader(yaml.SafeLoader):
    """YAML's safe loader, with numbers read as their digits say: floats as Decimal where
    they are plain decimals, ``0750`` as 750 (YAML 1.2 §10.3.2; YAML 1.1 read octal 488),
    and sexagesimal ``1:30`` (YAML 1.1's 90) as the text it is, never a number."""


    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """A mapping whose keys are unique, as YAML 1.2 §3.2.1.1 requires and PyYAML does
        not check (it kept the last). Keys a merge (``<<``) brings may be overridden."""
        seen: dict[tuple[str, str], int] = {}
        for key_node, _value in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE:
                continue
            key, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key_node.value[:80]!r} is given twice in one "
                    f"mapping (lines {seen[key]} and {line})", key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


_MERGE = "tag:yaml.org,2002:merge"


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
