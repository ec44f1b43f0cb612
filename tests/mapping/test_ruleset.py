"""Rule documents: every malformed rule is rejected with a message naming where; files parse."""

from __future__ import annotations

import pytest

from app.errors import InvalidInput
from app.mapping.rulefile import read_file
from app.mapping.ruleset import document, parse_document

GOOD = {"id": "r1", "role": "buyer", "unit": "Engineering", "match": {"group": "G"}}


@pytest.mark.parametrize(("rule", "message"), [
    ({**GOOD, "id": "bad id!"}, r"rules\[0\].id"),
    ({**GOOD, "priority": "high"}, "priority: must be an integer"),
    ({**GOOD, "priority": True}, "priority: must be an integer"),
    ({**GOOD, "priority": 10**12}, "priority: must be an integer within"),
    ({**GOOD, "description": "x" * 1001}, "description: must be a string of at most"),
    ({**GOOD, "match": {"group": "a" * 501, "match": "regex"}}, "at most 500 characters"),
    ({**GOOD, "match": {"grup": "G"}}, "must contain one of group"),
    ({**GOOD, "match": {"group": "G", "by": "email"}}, "by: must be one of"),
    ({**GOOD, "match": {"group": "G", "match": "fuzzy"}}, "match.match: must be one of"),
    ({**GOOD, "match": {"group": "(", "match": "regex"}}, "invalid regular expression"),
    ({**GOOD, "match": {"attribute": "salary", "value": "1"}}, "is not one of department"),
    ({**GOOD, "match": {"attribute": "title", "present": "yes"}}, "present: must be true"),
    ({**GOOD, "match": {"all": []}}, "non-empty list"),
    ({**GOOD, "match": {"not": {"group": "G"}, "extra": 1}}, r"match\.extra: unknown key"),
    ({**GOOD, "colour": "red"}, r"rules\[0\]\.colour: unknown key"),
    ({**GOOD, "role": ""}, "role: must be a non-empty string"),
    ({k: v for k, v in GOOD.items() if k != "unit"}, "exactly one of unit"),
    ({**GOOD, "unit_from": {"attribute": "department"}}, "exactly one of unit"),
    ({**GOOD, "create_unit": "yes"}, "create_unit: must be true or false"),
    ({**GOOD, "unit_kind": "planet"}, "unit_kind: must be one of"),
    ({**GOOD, "parameters": [1]}, "parameters: must be a table"),
    ("not a table", "must be a table"),
])
def test_bad_rules_are_rejected_with_their_place(rule, message):
    """A malformed rule raises InvalidInput naming the rule and the problem."""
    with pytest.raises(InvalidInput, match=message):
        parse_document({"rules": [rule]})


def test_deeply_nested_conditions_are_refused():
    """Condition trees have a depth limit (no recursion bombs from an API body)."""
    cond: dict = {"group": "G"}
    for _ in range(20):
        cond = {"not": cond}
    with pytest.raises(InvalidInput, match="nest deeper"):
        parse_document({"rules": [{**GOOD, "match": cond}]})


@pytest.mark.parametrize(("doc", "message"), [
    ({"rules": [GOOD, GOOD]}, "duplicate rule id"),
    ({"policy": {"on_loss": "explode"}}, "on_loss: must be one of"),
    ({"policy": {"default_role": "buyer"}}, "go together"),
    ({"rulez": []}, "rulez: unknown key"),
    ([], "must be a table"),
])
def test_bad_documents_are_rejected(doc, message):
    """Documents: duplicate ids, unknown policies, stray keys."""
    with pytest.raises(InvalidInput, match=message):
        parse_document(doc)


def test_document_round_trips():
    """parse(document(x)) == x: stored rows are rebuilt by the same parser."""
    raw = {"policy": {"default_role": "quote_only", "default_unit": "Engineering",
                      "on_loss": "deprovision"},
           "rules": [{**GOOD, "priority": 3, "description": "d", "match": {"all": [
               {"group": "a*", "match": "glob"}, {"not": {"attribute": "country",
                                                         "value": ["JP", "KR"]}}]}},
               {"id": "r2", "role": "buyer", "unit_from": {"attribute": "department",
                                                           "under": "Departments"},
                "create_unit": True, "match": {"attribute": "department", "present": True}}]}
    once = parse_document(raw)
    assert parse_document(document(once)) == once


@pytest.mark.parametrize(("name", "text"), [
    ("rules.toml", '[[rules]]\nid = "r1"\nrole = "buyer"\nunit = "Engineering"\n'
                   'match = { group = "G" }\n'),
    ("rules.yaml", "rules:\n  - id: r1\n    role: buyer\n    unit: Engineering\n"
                   "    match: {group: G}\n"),
    ("rules.json", '{"rules": [{"id": "r1", "role": "buyer", "unit": "Engineering", '
                   '"match": {"group": "G"}}]}'),
])
def test_files_in_every_format(tmp_path, name, text):
    """TOML, YAML and JSON files give the same rule set."""
    path = tmp_path / name
    path.write_text(text)
    assert parse_document(read_file(path)) == parse_document({"rules": [GOOD]})


@pytest.mark.parametrize(("name", "text", "message"), [
    ("r.toml", "rules = [", "not valid TOML"),
    ("r.yaml", "rules: [", "not valid YAML"),
    ("r.json", "{", "not valid JSON"),
    ("r.txt", "", "end in .toml"),
    ("missing.toml", None, "cannot read"),
])
def test_unreadable_files(tmp_path, name, text, message):
    """Broken or unsupported files are one clear error."""
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(InvalidInput, match=message):
        read_file(path)


_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n"
    for i in range(8))  # b holds 10 a's, c 10 b's ... i: 10**9 x's


@pytest.mark.parametrize(("text", "message"), [
    ("rules: &r [*r]\n", "an alias stands for a node that holds it"),
    ("rules:\n  - &rule {id: r1, match: {any: [*rule]}}\n",
     "an alias stands for a node that holds it"),
    (_LAUGHS, "its aliases stand for more than 100000 values"),
])
def test_yaml_aliases_that_never_end_or_multiply_are_refused(tmp_path, text, message):
    """A YAML alias inside the node it names (a list that holds itself), or aliases of
    aliases (a billion x's in nine lines): `roster mapping apply` never ended, walking the
    document for NUL characters (a loop that grew until memory ran out). Refused before the
    document is built, naming the file; anchors and aliases within reason still work."""
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=message):
        read_file(path)
    path.write_text("base: &base {role: buyer, unit: Engineering}\n"
                    "rules:\n  - {<<: *base, id: r1, match: {group: G}}\n")
    assert parse_document({"rules": read_file(path)["rules"]}) == \
        parse_document({"rules": [GOOD]})
