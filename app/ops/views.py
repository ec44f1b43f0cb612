"""/healthz (process up), /readyz (database reachable and writable, migrations at head),
/metrics."""

from __future__ import annotations

import logging
import os

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import Engine

from app.db_errors import describe_transient, is_transient
from app.engine import sqlite_file_problem, sqlite_path, sqlite_refuses_writes
from app.log_throttle import EveryInterval
from app.migrate import code_head, current_revision, newer_release

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)
# A balancer or kubelet probes every second or so, and each probe of a database that is away
# wrote a warning with a traceback (~40 lines): one line a minute says it as well.
UNREACHABLE_LOG = EveryInterval(60.0)
WRITE_CHECK_LOG = EveryInterval(60.0)
DISK_FULL_LOG = EveryInterval(60.0)
FILE_GONE_LOG = EveryInterval(60.0)


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: answers while the process runs, without touching the database."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Readiness: the database answers and its schema is at this code's migration head, or
    at a newer release's (a rolling deploy); behind it (not upgraded yet) is a 503."""
    db = current_app.extensions["roster.db"]
    try:
        current = current_revision(db.engine)
    except Exception as exc:  # any driver error means "not ready", never a 500
        if UNREACHABLE_LOG.due():
            log.warning("readiness check: database unreachable (%s); said at most once a "
                        "minute", describe_transient(exc), exc_info=not is_transient(exc))
        return jsonify(status="unavailable", reason="database unreachable"), 503
    if (problem := sqlite_file_problem(db.engine)) is not None:
        if FILE_GONE_LOG.due():
            log.warning("readiness check: %s: the SQLite file this process opened is no "
                        "longer at %s; its writes reach no other process and are lost at "
                        "restart (restart it on the file there); said at most once a minute",
                        problem, sqlite_path(db.engine.url))
        return jsonify(status="unavailable", reason=problem), 503
    head = code_head()
    if current != head and newer_release(current):
        # A rolling deploy migrated ahead of this node, which serves on until replaced: out
        # of the balancer, every old node would be out at once.
        return jsonify(status="ok", revision=current, head=head,
                       note="the database is at a newer release's revision"), 200
    if current != head:
        return jsonify(status="unavailable", reason="migrations not at head",
                       current=current, head=head), 503
    if _refuses_writes(db.engine):
        return jsonify(status="unavailable", reason="database read-only"), 503
    # Free space below which the SQLite database's disk counts as full (0: never): a write
    # transaction needs room for its WAL frames (a page each, 4 KiB) and the rollback of a
    # checkpoint; with less, writes are failing ("database or disk is full") or about to.
    below = current_app.config["ROSTER"]["database"]["sqlite_min_free_bytes"]
    free = _sqlite_free_bytes(db.engine) if below else None
    if free is not None and free < below:
        if DISK_FULL_LOG.due():
            log.warning("readiness check: the disk of the SQLite database has %d bytes free "
                        "(under database.sqlite_min_free_bytes, %d): writes fail with "
                        "'database or disk is full'; said at most once a minute", free, below)
        return jsonify(status="unavailable", reason="database disk full", free_bytes=free), 503
    return jsonify(status="ok", revision=current), 200


def _refuses_writes(engine: Engine) -> bool:
    """SQLite: a write that changes nothing fails. PostgreSQL: the session is read-only (a hot
    standby, where a node lands when it reaches the replica after a failover, or
    ``default_transaction_read_only``); the schema answered, so the probe said ready while
    every write failed."""
    try:
        if engine.dialect.name == "sqlite":
            return sqlite_refuses_writes(engine)
        with engine.connect() as conn:
            return conn.exec_driver_sql("SHOW transaction_read_only").scalar() == "on"
    except Exception as exc:  # the file vanished between the two checks: not ready either
        if WRITE_CHECK_LOG.due():
            log.warning("readiness check: write check failed (%s); said at most once "
                        "a minute", describe_transient(exc), exc_info=not is_transient(exc))
        return True


def _sqlite_free_bytes(engine: Engine) -> int | None:
    """The bytes this process may still write on the SQLite database's filesystem (None on
    PostgreSQL or in memory). A full disk fails every write, but not the write check above:
    a write that changes nothing allocates nothing, and a WAL reset after a checkpoint is
    written over in place. The readiness said ok while every write was a 503."""
    if engine.dialect.name != "sqlite":
        return None
    path = sqlite_path(engine.url)
    if path in ("", ":memory:"):
        return None
    try:
        stat = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return None  # the directory vanished: the checks above say so
    # root may use the blocks reserved for it (f_bfree); anyone else only f_bavail.
    blocks = stat.f_bfree if os.geteuid() == 0 else stat.f_bavail
    return blocks * stat.f_frsize


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus exposition of request counts and latency histograms."""
    return current_app.extensions["roster.metrics"].render()
