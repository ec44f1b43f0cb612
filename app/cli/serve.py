"""`roster serve`: the production server (gunicorn with config/gunicorn.conf.py)."""

from __future__ import annotations

import os
import sys

import click

from app.cli.base import CliContext, pass_ctx
from app.settings import ROOT, worker_threads
from app.settings_checks import SERVER_BOUNDS, bind_problem


def _checked_bind(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    problem = bind_problem(value) if value is not None else None
    if problem:
        raise click.BadParameter(f"{value!r}: {problem}")
    return value


@click.command()
@click.option("--bind", default=None, callback=_checked_bind,
              help="Address to bind: HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N "
                   "(default: server.bind).")
@click.option("--workers", type=click.IntRange(1, SERVER_BOUNDS["workers"]), default=None,
              help="Worker processes (default: server.workers).")
@click.option("--threads", type=click.IntRange(1, 64), default=None,
              help="Request threads per worker (default: server.threads; 0 there picks "
                   "1 on SQLite, 4 on PostgreSQL).")
@pass_ctx
def serve(ctx: CliContext, bind: str | None, workers: int | None,
          threads: int | None) -> None:
    """Serve app:create_app() under gunicorn."""
    server = ctx.settings["server"]  # validates settings before gunicorn starts
    # config/gunicorn.conf.py reads these from the environment, wherever they were set.
    os.environ["ROSTER_SERVER__TIMEOUT"] = str(server["timeout"])
    os.environ["ROSTER_SERVER__SWITCH_INTERVAL_US"] = str(server["switch_interval_us"])
    os.environ["ROSTER_SERVER__THREADS"] = str(threads or worker_threads(ctx.settings))
    argv = [sys.executable, "-m", "gunicorn", "--config", str(ROOT / "config" / "gunicorn.conf.py"),
            "--bind", bind or server["bind"], "--workers", str(workers or server["workers"]),
            "app:create_app()"]
    os.execvp(argv[0], argv)  # noqa: S606 - replacing this process with gunicorn
