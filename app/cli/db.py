"""`roster db`: schema migrations."""

from __future__ import annotations

import click

from app import migrate
from app.cli.base import CliContext, pass_ctx
from app.errors import MigrationBlocked


@click.group()
def db() -> None:
    """Database schema migrations (Alembic)."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@pass_ctx
def upgrade(ctx: CliContext, revision: str) -> None:
    """Migrate the database up to REVISION (default: head)."""
    _prepare_sqlite_dir(ctx.settings["database"]["url"])
    try:
        migrate.upgrade(ctx.settings["database"]["url"], revision)
    except MigrationBlocked as exc:  # data to resolve first; the migration rolled back
        raise click.ClickException(str(exc)) from None
    click.echo(f"database at {migrate.current_revision(ctx.db.engine)}")


@db.command("downgrade")
@click.argument("revision")
@pass_ctx
def downgrade(ctx: CliContext, revision: str) -> None:
    """Migrate the database down to REVISION ("base" empties it)."""
    migrate.downgrade(ctx.settings["database"]["url"], revision)
    click.echo(f"database at {migrate.current_revision(ctx.db.engine) or 'base'}")


@db.command("current")
@pass_ctx
def current(ctx: CliContext) -> None:
    """Print the database's revision and the newest one available."""
    click.echo(f"current: {migrate.current_revision(ctx.db.engine) or 'base'}")
    click.echo(f"head:    {migrate.head_revision()}")


def _prepare_sqlite_dir(url: str) -> None:
    from pathlib import Path

    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
