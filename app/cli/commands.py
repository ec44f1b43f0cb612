"""Registers every command group on `roster` (imported late to keep --help fast)."""

from __future__ import annotations

from app.cli.base import cli


def register() -> None:
    """Attach the command groups; safe to call more than once."""
    # scim_ops registers itself on the directory group (requests, report, oauth; issue 5).
    from app.cli import db, demo, directory, org, scim_ops, serve  # noqa: F401

    for command in (db.db, org.org, org.unit, directory.directory, serve.serve, demo.demo):
        if command.name not in cli.commands:
            cli.add_command(command)
    from app.cli.apikey import apikey  # issue 3: API keys

    cli.add_command(apikey)
    from app.cli.events import issue7_commands  # issue 7: audit, lifecycle, events, worker

    for command in issue7_commands():
        cli.add_command(command)
    from app.cli.mapping import register_mapping_commands  # issue 6: mapping, role, user

    register_mapping_commands()
    from app.cli import oidc  # noqa: F401  issue 8: adds `connection oidc`
    from app.cli.connection import connection  # issue 8: SSO connections and traces
    from app.cli.sso import sso

    for command in (connection, sso):
        cli.add_command(command)
