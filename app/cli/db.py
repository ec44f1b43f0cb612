"""`roster db`: schema migrations."""

from __future__ import annotations

import click
from alembic.util.exc import CommandError
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from app import migrate
from app.cli.base import CliContext, pass_ctx
from app.errors import MigrationBlocked


@click.group()
@pass_ctx
def db(ctx: CliContext) -> None:
    """Database schema migrations (Alembic)."""
    ctx.check_schema = False  # these commands are how a schema not at head is fixed


def _given_revision(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """A target revision: empty or blank (``--revision "$REV"`` with REV unset) met an
    assertion inside Alembic, a traceback."""
    if not value.strip():
        raise click.BadParameter(f"must not be empty: head, base or a revision such as "
                                 f"{migrate.head_revision()}")
    return value


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True, callback=_given_revision,
              help="Target revision.")
@pass_ctx
def upgrade(ctx: CliContext, revision: str) -> None:
    """Migrate the database up to REVISION (default: head)."""
    _prepare_sqlite_dir(ctx.settings["database"]["url"])
    try:
        before = migrate.current_revision(ctx.db.engine)
        migrate.upgrade(ctx.settings["database"]["url"], revision)
    except MigrationBlocked as exc:  # data to resolve first; the migration rolled back
        raise click.ClickException(str(exc)) from None
    except (CommandError, SQLAlchemyError) as exc:
        raise click.ClickException(_failed(ctx, exc)) from None
    now = migrate.current_revision(ctx.db.engine)
    if revision not in ("head", "heads") and now == before and now != revision:
        # Alembic takes an older target as reached: say so, rather than a bare "at 0029".
        click.echo(f"database at {now}, already past {revision}: an upgrade never goes "
                   f"back (`roster db downgrade {revision}` does)")
        return
    click.echo(f"database at {now}")


def _failed(ctx: CliContext, exc: Exception) -> str:
    """One line for a migration that could not run, and where the database stands."""
    try:
        revision = migrate.current_revision(ctx.db.engine)
        current, newer = revision or "base", migrate.newer_release(revision)  # as `db current`
    except SQLAlchemyError:
        current, newer = "unknown (the database cannot be read)", False
    if isinstance(exc, CommandError) and newer:
        return (f"the database is at revision {current} of a newer release; this release "
                f"knows up to {migrate.head_revision()}")
    if isinstance(exc, CommandError):
        return f"migration refused: {exc}; the database is at revision {current}"
    if isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) == "55P03":
        what = ("a transaction holds a lock on a table this migration changes (a session "
                "idle in transaction? see pg_stat_activity); retry once it ends")
    elif isinstance(exc, OperationalError) and "database is locked" in str(exc.orig):
        what = ("another process held SQLite's write lock throughout the busy timeout (a "
                "long write of a running Roster, or another `roster db upgrade`); nothing "
                "changed, retry")
    else:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        what = f"database error: {first[0] if first else type(exc).__name__}"
    return f"{what}; the database is at revision {current}"


@db.command("downgrade")
@click.argument("revision", callback=_given_revision)
@pass_ctx
def downgrade(ctx: CliContext, revision: str) -> None:
    """Migrate the database down to REVISION ("base" empties it)."""
    try:
        migrate.downgrade(ctx.settings["database"]["url"], revision)
    except MigrationBlocked as exc:  # names 0032's downgrade would join; rolled back
        raise click.ClickException(str(exc)) from None
    except (CommandError, SQLAlchemyError) as exc:
        raise click.ClickException(_failed(ctx, exc)) from None
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
        parent = Path(parsed.database).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file where a directory goes, /proc, a read-only mount
            raise click.ClickException(f"cannot make the SQLite database's directory {parent}: "
                                       f"{exc.strerror}") from None
