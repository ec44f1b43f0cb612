"""`roster serve`: the production server (gunicorn with config/gunicorn.conf.py)."""

from __future__ import annotations

import ipaddress
import os
import re
import sys

import click

from app.cli.base import CliContext, pass_ctx
from app.settings import ROOT, worker_threads

# A host name (RFC 1123 §2.1 labels) or an IPv4 address; IPv6 comes in brackets.
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?\Z")


def bind_problem(value: str) -> str | None:
    """Why gunicorn could not bind ``value`` (HOST, HOST:PORT, [IPv6]:PORT, unix:PATH or
    fd://N, as gunicorn's ``--bind`` reads it), or None. Gunicorn was handed whatever was
    given: a port ``http`` or ``70000`` failed only there, in its own words, after the
    settings had loaded; a stray space bound a host name nobody has."""
    if value.startswith("unix:"):
        return None if value.removeprefix("unix:").lstrip("/") else "no socket path"
    if value.startswith("fd://"):
        return None if value[5:].isdigit() else "not a file descriptor number"
    netloc = value.removeprefix("tcp://")
    if netloc.startswith("["):
        host, sep, port = netloc[1:].partition("]")
        if not sep or (port and not port.startswith(":")):
            return "an IPv6 address goes in brackets: [::1]:8000"
        colon, port = port[:1], port[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"{host!r} is not an IPv6 address"
    else:
        host, colon, port = netloc.partition(":")
        if not _HOST.match(host) and not (colon and not host):  # ":8000": every interface
            return f"{host!r} is not a host name or IPv4 address"
    if colon and not (port.isascii() and port.isdigit() and int(port) <= 65535):
        return f"{port!r} is not a port number (0 to 65535)"
    return None


def _checked_bind(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    problem = bind_problem(value) if value is not None else None
    if problem:
        raise click.BadParameter(f"{value!r}: {problem}")
    return value


@click.command()
@click.option("--bind", default=None, callback=_checked_bind,
              help="Address to bind: HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N "
                   "(default: server.bind).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
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
