"""`roster mapping apply|list`, `roster user explain` and `roster role add|list` end to end."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register
from app.models import User
from tests.conftest import rows

register()

RULES = """
[policy]
on_loss = "nothing"

[[rules]]
id = "buyers"
priority = 5
role = "buyer"
unit = "Engineering"
match = { group = "Buyers" }
parameters = { spending_limit = { amount = "750", currency = "EUR" } }
"""


@pytest.fixture
def run(world):
    """Invoke `roster ...` against the suite's database."""
    runner = CliRunner()

    def _run(*args: str, ok: bool = True):
        result = runner.invoke(cli, list(args), env={"ROSTER_DATABASE__URL": world.db.url},
                               catch_exceptions=False)
        assert (result.exit_code == 0) is ok, result.output
        assert "Traceback" not in result.output
        return result

    return _run


def test_dry_run_then_apply_then_list(world, run, tmp_path):
    """--dry-run shows the gains and writes nothing; apply stores; list shows rules."""
    alice = world.user("alice")
    world.group("Buyers", [alice])
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    out = run("mapping", "apply", str(path), "--org", "acme", "--dry-run").output
    assert "+ alice: buyer in Engineering [approval_threshold=500.00 EUR, " \
           "spending_limit=750 EUR]" in out
    assert "dry run, nothing written: 1 users evaluated, 1 grants added" in out
    assert rows(world.db, "SELECT count(*) AS n FROM grants")[0].n == 0
    out = run("mapping", "apply", str(path), "--org", "acme").output
    assert "applied: 1 users evaluated, 1 grants added" in out
    assert rows(world.db, "SELECT count(*) AS n FROM grants")[0].n == 1
    out = run("mapping", "list", "--org", "acme").output
    assert "buyers" in out
    assert "users losing every grant: nothing" in out
    assert "revision 1 applied" in out


def test_apply_refusal_and_force(world, run, tmp_path):
    """Removing everyone's grants is refused with the names; --force applies."""
    alice = world.user("alice")
    world.group("Buyers", [alice])
    (tmp_path / "rules.toml").write_text(RULES)
    (tmp_path / "empty.toml").write_text("rules = []\n")
    run("mapping", "apply", str(tmp_path / "rules.toml"), "--org", "acme")
    # The dry run says what the real run will answer (it used to print the totals only).
    dry = run("mapping", "apply", str(tmp_path / "empty.toml"), "--org", "acme",
              "--dry-run").output
    assert "! the apply would be refused: 100.0% of the active users lose every grant " \
        "(limit 20%); use --force" in dry
    forced = run("mapping", "apply", str(tmp_path / "empty.toml"), "--org", "acme",
                 "--dry-run", "--force").output
    assert "would be refused" not in forced
    out = run("mapping", "apply", str(tmp_path / "empty.toml"), "--org", "acme",
              ok=False).output
    assert "refused: 1 of 1 users (100%, limit 20%) would lose every grant: alice" in out
    assert "(apply with --force, or force=true in the API)" in out  # not "use force"
    assert rows(world.db, "SELECT count(*) AS n FROM grants")[0].n == 1
    run("mapping", "apply", str(tmp_path / "empty.toml"), "--org", "acme", "--force")
    assert rows(world.db, "SELECT count(*) AS n FROM grants")[0].n == 0


def test_bad_file_is_one_line(world, run, tmp_path):
    """A malformed rule file is one error line naming the problem."""
    path = tmp_path / "bad.yaml"
    path.write_text("rules:\n  - id: x\n    role: buyer\n    unit: Engineering\n"
                    "    match: {attribute: salary, value: '1'}\n")
    out = run("mapping", "apply", str(path), "--org", "acme", ok=False).output
    assert "rules[0].match.attribute: 'salary' is not one of" in out


def test_user_explain(world, run, tmp_path):
    """`user explain` prints the grants and reasons in words."""
    alice = world.user("alice")
    world.group("Buyers", [alice])
    (tmp_path / "rules.toml").write_text(RULES)
    run("mapping", "apply", str(tmp_path / "rules.toml"), "--org", "acme")
    out = run("user", "explain", "alice", "--org", "acme").output
    assert 'Buyer in Engineering since' in out
    assert 'rule buyers (priority 5) because member of group "Buyers"' in out
    assert '"grants"' in run("user", "explain", alice, "--org", "acme", "--json").output
    assert "does not exist" in run("user", "explain", "zed", "--org", "acme", ok=False).output


def test_role_add_and_list(world, run):
    """Custom roles are validated: unknown permissions and bad parameters are refused."""
    run("role", "add", "night_buyer", "--org", "acme", "--name", "Night buyer",
        "--permission", "orders.place", "--param", "night_limit=money:300 EUR",
        "--param", "max_orders=int:4", "--param", "rush=bool:false")
    out = run("role", "list", "--org", "acme").output
    assert "night_buyer" in out
    assert "night_limit=300 EUR" in out
    out = run("role", "add", "x", "--org", "acme", "--permission", "orders.teleport",
              ok=False).output
    assert "unknown permissions orders.teleport" in out
    out = run("role", "add", "y", "--org", "acme", "--permission", "orders.place",
              "--param", "n=int:many", ok=False).output
    assert "'many' is not an integer" in out
    out = run("role", "add", "z", "--org", "acme", "--permission", "orders.place",
              "--param", "m=money:5 euros", ok=False).output
    assert "parameters.m.default.currency: must be an ISO 4217 code" in out


def test_role_add_refuses_a_parameter_given_twice(world, run, db):
    """`--param limit=... --param limit=...` kept the last without a word (a permission
    given twice is refused): now refused, naming it, and no role is added."""
    out = run("role", "add", "twice", "--org", "acme", "--permission", "orders.place",
              "--param", "limit=money:5 EUR", "--param", "limit=money:10 EUR", ok=False).output
    assert "--param limit given more than once" in out
    assert rows(db, "SELECT count(*) FROM roles WHERE key = 'twice'")[0][0] == 0


def test_role_add_refuses_a_parameter_name_that_is_not_a_key(world, run, db):
    """`--param ' =bool:true'` added a role whose parameter lists as nothing; parameter
    names are lower-case letters, digits and _, as role keys (and the API refuses the same)."""
    for text in (" =bool:true", "Night Limit=money:5 EUR", "a.b=int:1"):
        out = run("role", "add", "odd", "--org", "acme", "--permission", "orders.place",
                  "--param", text, ok=False).output
        assert "lower-case letters, digits and _" in out
    assert rows(db, "SELECT count(*) FROM roles WHERE key = 'odd'")[0][0] == 0


@pytest.mark.parametrize("key", ["r\u00f4le", "buyer\uff11", "k" * 65])
def test_role_add_refuses_a_key_the_api_refuses(world, run, db, key):
    """The CLI checked role keys with str.isalnum and str.islower, which take "rôle" and
    fullwidth digits, and no length (the column holds 64): the API's rule, lower-case ASCII
    letters, digits and _, 1-64, now holds for both."""
    out = run("role", "add", key, "--org", "acme", "--permission", "orders.place",
              ok=False).output
    assert "lower-case letters, digits and _, 1-64 long" in out
    assert rows(db, "SELECT count(*) FROM roles WHERE custom")[0][0] == 0


@pytest.mark.parametrize("default", ["\uff13", "1_000", " 5", "+5", "\u0663"])
def test_role_add_refuses_an_int_default_that_is_not_ascii_digits(world, run, db, default):
    """`--param seats=int:DEFAULT` went through int(), which also reads fullwidth and other
    scripts' digits, `1_000`, `+5` and surrounding spaces: an integer is ASCII digits with
    an optional '-', as an API body's JSON integer and /scim's query integers are."""
    out = run("role", "add", "seats", "--org", "acme", "--permission", "orders.place",
              "--param", f"seats=int:{default}", ok=False).output
    assert "is not an integer" in out
    assert rows(db, "SELECT count(*) FROM roles WHERE key = 'seats'")[0][0] == 0


def test_mapping_commands_have_help():
    """--help works for every mapping, role and user command without a database."""
    runner = CliRunner()
    for args in (["mapping"], ["mapping", "apply"], ["mapping", "list"], ["user"],
                 ["user", "explain"], ["role"], ["role", "add"], ["role", "list"]):
        result = runner.invoke(cli, [*args, "--help"])
        assert result.exit_code == 0, args
        assert "Usage:" in result.output


def test_unit_add_grants_to_the_users_a_rule_aims_at(world, run):
    """`roster unit add` of the unit a rule names by department gives its users the grant
    and says so; a unit no rule reaches says nothing more."""
    world.user("mia", department="Marketing")
    world.apply({"policy": {"on_loss": "nothing"}, "rules": [
        {"id": "dept", "role": "buyer",
         "unit_from": {"attribute": "department", "under": "Departments"},
         "match": {"attribute": "department", "present": True}}]})
    assert rows(world.db, "SELECT count(*) AS n FROM grants")[0].n == 0
    out = run("unit", "add", "--org", "acme", "--name", "Marketing", "--kind", "department",
              "--parent", "Departments").output
    assert "unit Departments/Marketing (department) created" in out
    assert "re-evaluated 1 user(s): 1 grant(s) added, 0 removed, 0 updated" in out
    granted = rows(world.db, "SELECT units.path FROM grants JOIN units ON "
                             "units.id = grants.unit_id")
    assert [r.path for r in granted] == ["Departments/Marketing"]
    out = run("unit", "add", "--org", "acme", "--name", "Kyoto", "--kind", "location",
              "--parent", "Engineering").output
    assert "re-evaluated" not in out


@pytest.mark.parametrize(("value", "got"), [
    ("NO", "False (read as bool)"), ("4711", "4711 (read as int)"),
    ("2024-01-01", "datetime.date(2024, 1, 1) (read as date)")])
def test_unquoted_values_in_a_yaml_file_say_what_was_read(world, tmp_path, value, got):
    """A country NO (YAML 1.1's false), a cost center 4711 or a date, unquoted in a rule
    file, are refused saying what the reader made of them and to quote them; the message
    was "must be a non-empty string" for a value the admin wrote as one."""
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n- id: nordic\n  role: buyer\n  unit: Engineering\n  match: "
                    f"{{any: [{{attribute: country, value: [SE, {value}]}}]}}\n")
    result = CliRunner().invoke(cli, ["mapping", "apply", str(path), "--org", "acme"],
                                env={"ROSTER_DATABASE__URL": world.db.url})
    assert result.exit_code == 1, result.output
    assert result.output == (f"Error: rules[0].match.any[0].value[1]: must be a non-empty "
                             f"string, got {got}: quote the value, e.g. \"4711\" or \"NO\"\n")


@pytest.mark.parametrize(("text", "said"), [
    ('match = { attribute = "title", present = true, match = "glob" }',
     "rules[0].match.match: not with present"),
    ('match = { group = "Buyers ", match = "glob" }',
     "rules[0].match.group: starts or ends with white space"),
    ('match = { group = "Buyers" }\n\n[[rules]]\nid = "BUYERS"\nrole = "buyer"\n'
     'unit = "Engineering"\nmatch = { group = "Buyers" }',
     "rules[1].id: rule id 'BUYERS' is 'buyers' in another case"),
])
def test_rule_file_slips_are_one_line_naming_the_field(world, run, tmp_path, text, said):
    """`roster mapping apply` reads files with the API's parser: the same refusals."""
    path = tmp_path / "rules.toml"
    path.write_text(f'[[rules]]\nid = "buyers"\nrole = "buyer"\nunit = "Engineering"\n{text}\n')
    out = run("mapping", "apply", str(path), "--org", "acme", "--dry-run", ok=False).output
    assert said in out
    assert rows(world.db, "SELECT count(*) AS n FROM mapping_rules")[0].n == 0


def test_user_explain_refuses_a_name_two_directories_hold(world, run):
    """Two IdPs of one organization (a migration) may each hold `dup`: `user explain dup`
    named one of them at random; it is refused naming both, as `roster lifecycle` refuses
    it, and the id (or a name only one user holds) still explains."""
    first = world.user("dup", primary_email="dup@acme.example")
    run("directory", "create", "--org", "acme", "--vendor", "entra")
    [other_dir] = [r.id for r in rows(world.db, "SELECT id FROM directories WHERE vendor = "
                                                "'entra'")]
    with world.db.transaction() as s:
        second = User(directory_id=other_dir, organization_id=world.org_id, user_name="DUP")
        s.add(second)
        s.flush()
        second_id = second.id
    out = run("user", "explain", "dup", "--org", "acme", ok=False).output
    assert "several users of acme" in out
    assert first in out
    assert second_id in out
    assert "dup is active" in run("user", "explain", first, "--org", "acme").output
    assert "dup is active" in run("user", "explain", "dup@acme.example", "--org",
                                  "acme").output


_RULE_JSON = '{{"rules": [{{"id": "b", "role": "buyer", {extra}"unit": "Engineering", ' \
             '"match": {{"group": "Buyers"}}}}]}}'


@pytest.mark.parametrize(("name", "text", "said"), [
    ("dup.json", _RULE_JSON.format(extra='"role": "administrator", '),
     "is not valid JSON: the key 'role' is given twice in one object"),
    ("dup.yaml", "rules:\n  - id: b\n    role: buyer\n    unit: Engineering\n"
                 "    match: {group: Buyers}\n    role: administrator\n",
     "is not valid YAML: the key 'role' is given twice in one mapping (lines 3 and 6)"),
    ("nul.json", _RULE_JSON.format(extra='"description": "a\\u0000b", '),
     "rules.0.description contains a NUL character"),
    ("nul.toml", '[[rules]]\nid = "b"\nrole = "buyer"\nunit = "Engineering"\n'
                 'match = { group = "Buy\\u0000ers" }\n',
     "rules.0.match.group contains a NUL character"),
    ("surrogate.json", _RULE_JSON.format(extra='"description": "\\ud800", '),
     "rules.0.description contains an unpaired UTF-16 surrogate"),
    ("surrogate.yaml", 'rules:\n  - id: b\n    role: buyer\n    unit: Engineering\n'
                       '    description: "\\ud800"\n    match: {group: Buyers}\n',
     "rules.0.description contains an unpaired UTF-16 surrogate"),
])
def test_rule_files_refuse_what_an_api_body_may_not_hold(world, run, tmp_path, name, text,
                                                         said):
    """A key given twice in a JSON or YAML rule file was read as its last value (`role:
    buyer`, then `role: administrator` further down, granted Administrator), a NUL stored on
    SQLite what PostgreSQL refuses, and a lone surrogate ended the apply in a traceback: the
    API refuses all three, and so does `roster mapping apply`, naming them, writing nothing."""
    alice = world.user("alice")
    world.group("Buyers", [alice])
    path = tmp_path / name
    path.write_text(text)
    for flags in (("--dry-run",), ("--force",)):
        out = run("mapping", "apply", str(path), "--org", "acme", *flags, ok=False).output
        assert said in out
    assert rows(world.db, "SELECT count(*) AS n FROM mapping_rules")[0].n == 0
    assert rows(world.db, "SELECT count(*) AS n FROM grants")[0].n == 0


def test_yaml_merge_keys_may_still_be_overridden(world, run, tmp_path):
    """A YAML merge (`<<: *base`) brings keys a rule may override: no duplicate there."""
    alice = world.user("alice")
    world.group("Buyers", [alice])
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - &base {id: a, role: buyer, unit: Engineering, "
                    "match: {group: Buyers}}\n  - <<: *base\n    id: b\n    role: finance\n")
    out = run("mapping", "apply", str(path), "--org", "acme").output
    assert "applied: 1 users evaluated, 2 grants added" in out


def test_a_dry_run_showing_every_change_says_none_is_left_out(world, run, tmp_path):
    """The dry run printed "... (N more users not shown)" when users gaining plus users
    losing passed 200, counting each user who moves between units twice: 150 moving users,
    all 150 shown, were followed by "150 more users not shown"."""
    names = [world.user(f"u{i:03}") for i in range(150)]
    world.group("Buyers", names)
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    run("mapping", "apply", str(path), "--org", "acme")
    path.write_text(RULES.replace('unit = "Engineering"', 'unit = "Engineering/Tokyo"'))
    out = run("mapping", "apply", str(path), "--org", "acme", "--dry-run").output
    assert out.count("+ u") == out.count("- u") == 150
    assert "more users not shown" not in out
