"""`roster mapping`, `roster role` and `roster user explain`: rules, custom roles, explanations."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from app.cli.base import CliContext, cli, echo_table, given_name, pass_ctx, say
from app.directory.organizations import get_organization
from app.errors import InvalidInput
from app.mapping.access import effective_access, explain_lines, find_user, format_value
from app.mapping.catalog import RoleSpec
from app.mapping.preview import Preview, apply_ruleset, preview
from app.mapping.roles import add_role, list_roles
from app.mapping.rulefile import read_file
from app.mapping.ruleset import condition_document, document, parse_document
from app.mapping.storage import latest_revision, load_ruleset

_INTEGER = re.compile(r"-?[0-9]{1,4000}\Z")  # int() reads at most 4,300 digits
SHOWN = 200  # per-user lines printed by a dry run; totals always count everyone


@click.group()
def mapping() -> None:
    """Mapping rules: IdP groups and attributes -> roles in units."""


def _grant_text(view: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={format_value(v)}" for k, v in sorted(view["parameters"].items()))
    new = " (creates the unit)" if view.get("creates_unit") else ""
    return f"{view['role']} in {view['unit']}{new}{f' [{params}]' if params else ''}"


def echo_preview(result: Preview, *, applied: bool) -> None:
    """Print who gains and who loses what, then the totals."""
    for change in result.changes[:SHOWN]:
        for view in change["gains"]:
            say(f"+ {change['user_name']}: {_grant_text(view)}")
        for view in change["loses"]:
            say(f"- {change['user_name']}: {_grant_text(view)}")
        for upd in change["updates"]:
            say(f"~ {change['user_name']}: {_grant_text(upd['before'])} -> "
                f"{_grant_text(upd['after'])}")
    changed = result.users_changed  # a user gaining and losing is one user, listed once
    if changed > SHOWN:
        say(f"... ({changed - min(SHOWN, len(result.changes))} more users not shown)")
    if result.losing_all:
        names = ", ".join(u["user_name"] for u in result.losing_all[:50])
        say(f"! {len(result.losing_all)} users would lose every grant: {names}")
    t = result.totals()
    verb = "applied" if applied else "dry run, nothing written"
    say(f"{verb}: {t['users_evaluated']} users evaluated, {t['grants_added']} grants "
        f"added ({t['users_gaining']} users), {t['grants_removed']} removed "
        f"({t['users_losing']} users), {t['grants_updated']} updated, "
        f"{t['users_losing_all']} users lose every grant ({t['loss_share']:.1%})")


@mapping.command("apply")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--org", "org_ref", required=True, help="Organization slug or id.")
@click.option("--dry-run", is_flag=True, help="Show who gains and loses what; write nothing.")
@click.option("--force", is_flag=True, help="Apply even if too many users lose every grant.")
@pass_ctx
def apply_(ctx: CliContext, file: Path, org_ref: str, dry_run: bool, force: bool) -> None:
    """Replace the organization's rules and policy with FILE (.toml, .yaml or .json)."""
    with ctx.transaction() as session:
        ruleset = parse_document(read_file(file))
        org = get_organization(session, org_ref)
        share = ctx.settings["mapping"]["max_loss_share"]
        if dry_run:
            result = preview(session, org, ruleset)
            echo_preview(result, applied=False)
            if result.loss_share > share and not force:
                # What the real run would answer: say it now, not after the operator runs it.
                say(f"! the apply would be refused: {result.loss_share:.1%} of the "
                    f"active users lose every grant (limit {share:.0%}); use --force")
            return
        result = apply_ruleset(session, org, ruleset, ctx.actor, max_loss_share=share,
                               force=force)
    # Said once the transaction has committed: a failing commit prints only its error.
    echo_preview(result, applied=True)


@mapping.command("list")
@click.option("--org", "org_ref", required=True, help="Organization slug or id.")
@click.option("--json", "as_json", is_flag=True, help="Print the rule document as JSON.")
@pass_ctx
def list_(ctx: CliContext, org_ref: str, as_json: bool) -> None:
    """List the organization's rules (highest priority first) and its policy."""
    with ctx.transaction() as session:
        org = get_organization(session, org_ref)
        ruleset = load_ruleset(session, org)
        revision = latest_revision(session, org)
    if as_json:
        click.echo(json.dumps(document(ruleset), indent=2))
        return
    rows = [{"id": r.id, "priority": r.priority, "role": r.role,
             "unit": r.unit.ref or f"{r.unit.under or ''}/<{r.unit.from_attribute}>",
             "match": json.dumps(condition_document(r.condition))} for r in ruleset.rules]
    echo_table(rows, ["id", "priority", "role", "unit", "match"])
    for rule in ruleset.rules:
        if rule.disabled:
            say(f"! rule {rule.id} is disabled (matches no one): {rule.disabled}")
    p = ruleset.policy
    default = f"{p.default_role} in {p.default_unit}" if p.default_role else "no access"
    say(f"policy: users matching no rule get {default}; users losing every grant: "
        f"{p.on_loss}")
    if revision is not None:
        say(f"revision {revision.number} applied {revision.created_at:%Y-%m-%d %H:%M} "
            f"UTC by {revision.actor_type} {revision.actor_id or ''}".rstrip())


@click.group()
def user() -> None:
    """Provisioned users."""


@user.command("explain")
@click.argument("user_ref")
@click.option("--org", "org_ref", required=True, help="Organization slug or id.")
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON instead.")
@pass_ctx
def explain(ctx: CliContext, user_ref: str, org_ref: str, as_json: bool) -> None:
    """Say what USER (id, userName or email) may do, where, why, and who approves."""
    with ctx.transaction() as session:
        org = get_organization(session, org_ref)
        access = effective_access(session, find_user(session, org, user_ref))
    if as_json:
        click.echo(json.dumps(access, indent=2))
        return
    for line in explain_lines(access):
        say(line)


@click.group()
def role() -> None:
    """The role catalog of an organization."""


def parse_param(text: str) -> tuple[str, dict[str, Any]]:
    """NAME=TYPE:DEFAULT, e.g. limit=money:5000 EUR, seats=int:3, rush=bool:false."""
    name, _, rest = text.partition("=")
    kind, _, default = rest.partition(":")
    if not name or kind not in ("money", "int", "bool") or not default:
        raise InvalidInput(f"--param {text!r}: expected NAME=money|int|bool:DEFAULT",
                           field="param")
    value: Any = default
    if kind == "money":
        amount, _, currency = default.strip().partition(" ")
        value = {"amount": amount, "currency": currency.strip()}
    elif kind == "int":
        # ASCII digits, as a JSON integer: int() also read "\uff13", "1_000", "+5" and " 5".
        if not _INTEGER.match(default):
            raise InvalidInput(f"--param {name}: {default!r} is not an integer",
                               field="param")
        value = int(default)
    elif default.lower() in ("true", "false"):
        value = default.lower() == "true"
    return name, {"type": kind, "default": value}


def parse_params(texts: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Every ``--param``; a name given twice is refused (the last silently won), as a
    permission given twice is."""
    parameters: dict[str, dict[str, Any]] = {}
    for text in texts:
        name, spec = parse_param(text)
        if name in parameters:
            raise InvalidInput(f"--param {name} given more than once", field="param")
        parameters[name] = spec
    return parameters


@role.command("add")
@click.argument("key")
@click.option("--org", "org_ref", required=True, help="Organization slug or id.")
@click.option("--name", default=None, callback=given_name,
              help="Display name (default: the key).")
@click.option("--description", default="", help="What the role is for (shown in lists).")
@click.option("--permission", "permissions", multiple=True, required=True,
              help="A permission of the closed vocabulary (repeat).")
@click.option("--param", "params", multiple=True,
              help="NAME=TYPE:DEFAULT with TYPE money|int|bool, e.g. 'limit=money:500 EUR'.")
@pass_ctx
def role_add(ctx: CliContext, key: str, org_ref: str, name: str | None, description: str,
             permissions: tuple[str, ...], params: tuple[str, ...]) -> None:
    """Add custom role KEY to an organization's catalog."""
    with ctx.transaction() as session:
        parameters = parse_params(params)
        org = get_organization(session, org_ref)
        new = add_role(session, org, RoleSpec(key, name or key, description, permissions,
                                               parameters), ctx.actor)
    say(f"role {new.key} added to {org.slug} (id {new.id})")


@role.command("list")
@click.option("--org", "org_ref", required=True, help="Organization slug or id.")
@pass_ctx
def role_list(ctx: CliContext, org_ref: str) -> None:
    """List an organization's roles with permissions and parameters."""
    with ctx.transaction() as session:
        org = get_organization(session, org_ref)
        rows = [{"key": r.key, "name": r.name, "custom": "yes" if r.custom else "",
                 "permissions": ",".join(r.permissions),
                 "parameters": ", ".join(f"{k}={format_value(v.get('default'))}"
                                         for k, v in sorted(r.parameters.items()))}
                for r in list_roles(session, org)]
    echo_table(rows, ["key", "name", "custom", "permissions", "parameters"])


def register_mapping_commands() -> None:
    """Attach mapping, role and `user explain` (into an existing `user` group if there is one)."""
    for command in (mapping, role):
        if command.name not in cli.commands:
            cli.add_command(command)
    existing = cli.commands.get("user")
    if isinstance(existing, click.Group) and existing is not user:
        existing.add_command(explain)
    elif existing is None:
        cli.add_command(user)
