"""Gunicorn settings for `roster serve` and the Docker image. `roster serve` passes bind and
workers on the command line and server.timeout / server.switch_interval_us /
server.threads in the environment (ROSTER_SERVER__*); these are the process-level defaults."""

import gc
import os
import sys
import tempfile

# Prometheus: workers write samples to a shared directory so /metrics sums all of them.
# One the operator names must exist and be writable: prometheus_client writes each worker's
# samples there on every request, and a missing directory failed every request (a 500, even
# /healthz). It stops the server at start instead, like a setting that does not validate.
# The master runs this file again on SIGHUP: the directory it made itself (named in
# ROSTER_METRICS_TMPDIR) is made again if a /tmp cleaner took it, never refused. Set before
# anything imports prometheus_client (Roster's app does), which reads it at import.
_metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if not _metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="roster-metrics-")
    os.environ["ROSTER_METRICS_TMPDIR"] = os.environ["PROMETHEUS_MULTIPROC_DIR"]
elif _metrics_dir == os.environ.get("ROSTER_METRICS_TMPDIR"):
    os.makedirs(_metrics_dir, mode=0o700, exist_ok=True)
elif not (os.path.isdir(_metrics_dir) and os.access(_metrics_dir, os.W_OK | os.X_OK)):
    raise SystemExit(
        "roster: configuration error: PROMETHEUS_MULTIPROC_DIR must name a writable "
        f"directory (the workers' metrics are kept there), got {_metrics_dir!r}")


def _remove_metrics_dir_at_exit(made_here: bool) -> None:
    # The directory the master made is removed when it exits, not while a master SIGUSR2
    # started uses it (app/ops/metrics_dir.py).
    from app.ops.metrics_dir import own

    own(made_here=made_here)


if os.environ["PROMETHEUS_MULTIPROC_DIR"] == os.environ.get("ROSTER_METRICS_TMPDIR"):
    _remove_metrics_dir_at_exit(made_here=not _metrics_dir)


def _roster_settings() -> tuple[int, dict, dict]:
    # Roster's [server] and [logging] settings (environment over ROSTER_CONFIG's file over the
    # defaults), as `roster serve` resolved them or, when gunicorn runs directly (the Docker
    # image), read here; and server.threads by database when 0: 1 per worker on SQLite, 4 on
    # PostgreSQL. Settings that do not validate stop gunicorn here, before it binds or forks:
    # its SettingsError (a SystemExit) prints one line per problem and exits 1.
    from app.settings import load_settings, worker_threads

    settings = load_settings()
    return worker_threads(settings), settings["server"], settings["logging"]


_threads, _settings, _logging = _roster_settings()


def _refuse_bad_reloads() -> None:
    # A SIGHUP whose settings do not validate is refused, the workers serve on; it stopped
    # the whole server (app/ops/gunicorn_reload.py).
    from app.ops.gunicorn_reload import refuse_bad_reloads

    refuse_bad_reloads()


_refuse_bad_reloads()


# gunicorn's gthread worker, with the errors gunicorn answers itself (414, 431, a bad header)
# in SCIM's or the API's error format instead of an HTML page (app/ops/http_worker.py).
worker_class = "app.ops.http_worker.RosterWorker"
# server.workers and server.bind for gunicorn run directly (the Docker image): only `roster
# serve` passed them, so ROSTER_SERVER__WORKERS was ignored there and the image ran one worker.
# The command line (`roster serve`, the image's --bind) wins over these; gunicorn's own
# WEB_CONCURRENCY, when set, over server.workers.
if not os.environ.get("WEB_CONCURRENCY"):
    workers = int(_settings.get("workers", 2))
bind = [_settings.get("bind", "127.0.0.1:8000")]
threads = _threads
timeout = int(_settings.get("timeout", 30))
graceful_timeout = 20
keepalive = 5
# The longest request line gunicorn takes (its ceiling; the default is 4094). A SCIM GET with
# a long filter (RFC 7644 §3.4.2.2) reaches Roster up to here; past it gunicorn answers 414
# before Roster sees the request (a SCIM Error naming POST /.search, RFC 7644 §3.4.3).
limit_request_line = 8190
accesslog = None  # Roster writes its own structured access log line per request
errorlog = "-"
# gunicorn's own lines (booting, worker timeouts, signals, malformed requests) in Roster's
# format and level: one JSON object per line like the app's (app/ops/gunicorn_log.py), or
# gunicorn's text for a terminal (logging.format = "text"); credentials masked in both.
logger_class = ("app.ops.gunicorn_log.JsonLogger" if _logging["format"] == "json"
                else "app.ops.gunicorn_log.TextLogger")
loglevel = _logging["level"].lower()
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# No control socket (gunicorn >= 25.1, for its `gunicornc` tool, which Roster does not use): its
# default path is one per user, so every Roster server on a host replaced the last one's.
control_socket_disable = True


# CPython's GIL switch interval, in microseconds (CPython's default is 5000). A request
# thread that returns from a SQLite call must win the GIL back before it can go on, and
# while it holds SQLite's write lock every other writer waits for it; with 5 ms slices it
# waits behind threads doing pure-Python work. 1 ms measured ~35 % more SCIM creates per
# second on 2 cores, lookups unchanged (bench/README.md).
switch_interval_us = int(_settings.get("switch_interval_us", 1000))


def post_fork(server, worker):
    sys.setswitchinterval(switch_interval_us / 1_000_000)
    server.log.info("worker %s: %d request thread(s), GIL switch interval %d us", worker.pid,
                    server.cfg.threads, round(sys.getswitchinterval() * 1_000_000))


def post_worker_init(worker):
    # The app's long-lived objects (SQLAlchemy metadata and mappers, Flask, settings) go to
    # the permanent generation: the collector no longer walks them on every full collection
    # (https://docs.python.org/3/library/gc.html#gc.freeze).
    gc.freeze()


def on_starting(server):
    from app.ops.gunicorn_reload import reexec_as_module
    from app.ops.metrics_dir import on_starting

    on_starting(server)
    reexec_as_module(server)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
