"""The SCIM flight recorder: each request and response per directory, redacted and bounded.

Hooked onto the SCIM blueprint by :func:`init_recorder`. Recording is off the request's
path: after the view's transaction has ended (so a request whose transaction rolled back,
a 400, a 409, a 500, is recorded just like a success) the record is put in a bounded
in-process buffer, and a background thread writes the buffer every ``FLUSH_SECONDS`` (or
``FLUSH_RECORDS`` records) in one transaction with the dialect counters. A write
transaction per request cost ~10-15 % of a SCIM request and, on SQLite, made every read
queue for the write lock. :func:`flush` writes the buffer now (tests, reports, exit). A
crash loses at most one interval of records. :func:`flush` also writes what other apps of
the process buffered for the same database (a second app built with other settings has its
own buffer and thread, whose late write would otherwise land after the caller moved on,
say after a test emptied the tables). Every ``prune_every`` records a process
deletes the rows beyond the count bound of the directories just written and those past
the age bound: indexed deletes, so the bound holds within ``prune_every`` rows per worker.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import Flask, Request, Response, current_app, g, request
from sqlalchemy import Connection, Select, delete, insert, select
from sqlalchemy.orm import Session

from app.bearer import Presented, presented_bearer
from app.db import Database, Reader, delete_in_batches, utcnow
from app.db_errors import describe_transient, is_transient
from app.directory.oauth_clients import authenticate_bearer
from app.errors import Unauthorized
from app.log_throttle import EveryInterval
from app.migrate import schema_not_ready
from app.models.scim_ops import ScimRequest
from app.scim import dialect
from app.scim.dialect_report import count_notes
from app.scim.known_callers import UNKNOWN, KnownCallers
from app.scim.redaction import (
    given_secrets,
    mask_secrets,
    redact_body,
    redact_own_json,
    redact_query,
    sensitive_names,
)
from app.sql import fetch_many

log = logging.getLogger(__name__)
_INSERT = insert(ScimRequest)
# The buffer is written this often, or as soon as it holds FLUSH_RECORDS records.
FLUSH_SECONDS = 0.2
FLUSH_RECORDS = 200
# Past this many unwritten records (the database is stuck) new ones are dropped and counted.
MAX_PENDING = 10_000
# Every recorder of this process, by id (weakly: an app that is gone takes its own along).
_STATES: weakref.WeakValueDictionary[int, _State] = weakref.WeakValueDictionary()


@dataclass
class _State:
    """Per-process recorder state: settings read once, the buffer and its writer thread."""

    enabled: bool
    max_per_directory: int
    max_age: timedelta
    sensitive: frozenset[str]
    max_body_bytes: int
    prune_every: int
    db: Database
    pending: list[dict[str, Any]] = field(default_factory=list)
    recorded: int = 0
    dropped: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Serialises writers (the thread, flush() callers) so records keep their order.
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    wake: threading.Event = field(default_factory=threading.Event)
    # The writer belongs to the process that started it: gunicorn forks after create_app.
    writer_pid: int = 0
    # Records lost to a database outage since the last line saying so (once a minute).
    unstored: int = 0
    outage_log: EveryInterval = field(default_factory=lambda: EveryInterval(60.0))
    # The directory of each token seen lately: a refused request's, without a lookup.
    callers: KnownCallers = field(default_factory=KnownCallers)

    def add(self, row: dict[str, Any]) -> None:
        """Buffer one record; start this process's writer thread on first use."""
        with self.lock:
            if len(self.pending) >= MAX_PENDING:
                self.dropped += 1
                return
            self.pending.append(row)
            full = len(self.pending) >= FLUSH_RECORDS
            if self.writer_pid != os.getpid():
                self.writer_pid = os.getpid()
                threading.Thread(target=self._run, name="scim-recorder", daemon=True).start()
                atexit.register(self.flush)
        if full:
            self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait(FLUSH_SECONDS)
            self.wake.clear()
            try:
                self.flush()
            except Exception:
                log.exception("flight recorder could not store SCIM requests")

    def flush(self) -> None:
        """Write every buffered record in one transaction (one by one if that fails)."""
        with self.write_lock:
            with self.lock:
                batch, self.pending = self.pending, []
                dropped, self.dropped = self.dropped, 0
            if dropped:
                log.warning("flight recorder dropped %d SCIM requests (buffer full)", dropped)
            if not batch:
                return
            try:
                self._write(batch)
            except Exception as exc:
                self._salvage(batch, exc)

    def _salvage(self, batch: list[dict[str, Any]], exc: Exception) -> None:
        """After a failed batch: one log line, however many records it held.

        The database away, busy or full fails every record alike: retrying them one by one
        would log a traceback each (thousands in a minute) and wait a busy timeout each, so
        the batch is dropped, with one warning a minute at most. Otherwise one bad record
        (its directory deleted meanwhile) must not lose the rest: the others are written one
        by one, and those that fail too are counted in one error line with the first one's
        traceback.
        """
        if is_transient(exc):
            self.unstored += len(batch)
            if self.outage_log.due():
                log.warning("flight recorder dropped %d SCIM requests (database unavailable: "
                            "%s)", self.unstored, describe_transient(exc))
                self.unstored = 0
            return
        failed: list[Exception] = []
        for row in batch:
            try:
                self._write([row])
            except Exception as row_exc:
                failed.append(row_exc)
        if failed:
            log.error("flight recorder could not store %d of %d SCIM requests",
                      len(failed), len(batch), exc_info=failed[0])

    def _write(self, batch: list[dict[str, Any]]) -> None:
        now = utcnow()
        before, self.recorded = self.recorded, self.recorded + len(batch)
        prune_due = before // self.prune_every != self.recorded // self.prune_every
        # Core statements on a bare connection: the ORM unit of work would double the cost.
        with self.db.engine.begin() as conn:
            fetch_many(conn, _INSERT, batch)
            count_notes(conn, [(row["directory_id"], row["notes"], row["created_at"])
                               for row in batch])
            if prune_due:
                for directory_id in sorted({row["directory_id"] for row in batch}):
                    prune(conn, directory_id, self.max_per_directory, now - self.max_age)


def init_recorder(app: Flask, blueprint: str = "scim") -> None:
    """Register the recorder's before/after request hooks, scoped to the SCIM blueprint."""
    # Keyed by blueprint name, exactly as Blueprint.before_request registers them, so the
    # hooks run only for /scim/v2 and the blueprint module needs no change.
    app.before_request_funcs.setdefault(blueprint, []).append(_start)
    app.after_request_funcs.setdefault(blueprint, []).append(_finish)


def _state() -> _State:
    state: _State | None = current_app.extensions.get("roster.recorder")
    if state is None:
        cfg = current_app.config["ROSTER"]["recorder"]
        state = _State(
            enabled=cfg["enabled"], max_per_directory=cfg["max_per_directory"],
            max_age=timedelta(days=cfg["max_age_days"]),
            sensitive=sensitive_names(cfg["sensitive_attributes"]),
            max_body_bytes=cfg["max_body_bytes"], prune_every=max(1, cfg["prune_every"]),
            db=current_app.extensions["roster.db"],
        )
        current_app.extensions["roster.recorder"] = state
        _STATES[id(state)] = state
    return state


def flush(app: Flask) -> None:
    """Write what this process has buffered for ``app``'s database now, by every app.

    Each app has its own buffer and writer thread; flushing only ``app``'s own would leave
    another app's records (same database) to a write that may come after the caller has
    moved on. Each state's write lock also waits out a write its thread has under way.
    """
    database: Database | None = app.extensions.get("roster.db")
    own: _State | None = app.extensions.get("roster.recorder")
    states = [s for s in list(_STATES.values())
              if s is own or (database is not None and s.db.url == database.url)]
    for state in states:
        state.flush()


def _start() -> None:
    g.scim_notes = []
    g.scim_started = time.perf_counter()


def _finish(response: Response) -> Response:
    state = _state()
    if not state.enabled or g.get("scim_no_record"):
        return response
    try:
        _write(state, response)
    except Exception as exc:
        # The IdP's request already succeeded or failed on its own; never change its answer.
        # A database without Roster's tables (not migrated yet) is logged as such.
        if not schema_not_ready(current_app.extensions["roster.db"].engine, exc):
            log.exception("flight recorder could not store a SCIM request")
    return response


def _request_body(state: _State, req: Request) -> str | None:
    environ = req.environ  # read directly: werkzeug's header views cost a lookup each
    if not environ.get("CONTENT_LENGTH") and "HTTP_TRANSFER_ENCODING" not in environ:
        return None  # no body at all (a GET or DELETE): nothing to read
    length = req.content_length or 0
    if length > state.max_body_bytes:
        # Reading it would only be refused (413) or waste memory; its size is what matters.
        return f"({length} bytes; larger than recorder.max_body_bytes, not kept)"
    try:
        raw = req.get_data(cache=True)
    except Exception:
        return None
    return redact_body(raw, state.sensitive, state.max_body_bytes)


def _response_body(state: _State, req: Request, response: Response,
                   raw: bytes) -> str | None:
    """The response redacted; an error's ``detail`` also without the sensitive values of
    the request it may quote (its body is cached by then: the view read it)."""
    body = redact_own_json(raw, state.sensitive, state.max_body_bytes)
    if response.status_code < 400 or not body:
        return body
    try:
        sent = req.get_data(cache=True) if (req.content_length or 0) <= \
            state.max_body_bytes else None
    except Exception:
        sent = None
    return mask_secrets(body, given_secrets(sent, req.query_string, state.sensitive,
                                            state.max_body_bytes))


def _directory_of_caller(state: _State, db: Database, presented: Presented,
                         ctx: Any) -> str | None:
    """The directory of a request answered before its token was checked (a rate limit's
    429): remembered from the token's earlier requests, else looked up once and remembered
    (app/scim/known_callers.py). A token refused by the failed-authentication limit is
    never looked up: that limit answers without looking credentials up."""
    known = state.callers.get(presented.digest)
    if known is not UNKNOWN:
        return known  # type: ignore[return-value]
    if ctx.get("ratelimit_refused") == "failed_auth":
        return None
    with db.reader() as session:
        directory_id = _lookup_directory(session, presented.credential)
    state.callers.remember(presented.digest, directory_id)
    return directory_id


def _lookup_directory(session: Reader, credential: str) -> str | None:
    try:
        directory, _token = authenticate_bearer(session, credential)
    except Unauthorized:
        return None
    return directory.id


def _endpoint_notes(req: Request, response: Response) -> set[str]:
    """Notes known from the request's shape alone: only Okta replaces users with PUT, and
    only Entra names aadOptscim062020 in the tenant URL."""
    notes: set[str] = set()
    if req.method == "PUT" and req.endpoint == "scim.user" and response.status_code < 300:
        notes.add(dialect.OKTA_PUT_UPDATE)
    if req.query_string and dialect.names_entra_flag(req.args):
        notes.add(dialect.ENTRA_FLAG)
    return notes


def _write(state: _State, response: Response) -> None:
    db: Database = current_app.extensions["roster.db"]
    # The request and g once each: every access through Flask's proxies costs a lookup.
    req: Request = request._get_current_object()  # type: ignore[attr-defined]
    ctx = g._get_current_object()  # type: ignore[attr-defined]
    directory_id = ctx.get("directory_id")
    presented = presented_bearer()
    if directory_id is None:
        # Unauthenticated requests belong to no directory; there is nobody to show them to.
        # A token the view already tried (and refused) is not looked up again.
        if ctx.get("scim_auth_tried") or presented is None:
            return
        directory_id = _directory_of_caller(state, db, presented, ctx)
        if directory_id is None:
            return
    elif presented is not None:
        state.callers.remember(presented.digest, directory_id)
    elapsed_ms = (time.perf_counter() - ctx.get("scim_started", time.perf_counter())) * 1000
    response_raw = b"" if response.direct_passthrough or response.is_streamed \
        else response.get_data()
    now = utcnow()
    notes = sorted(set(ctx.get("scim_notes") or ()) | _endpoint_notes(req, response))
    row = {
        "directory_id": directory_id, "created_at": now, "request_id": ctx.get("request_id"),
        # No NUL (a decoded %00 in the path): PostgreSQL would refuse the record, and it
        # would be lost (after failing its whole batch's first try).
        "method": req.method, "path": req.path.replace("\x00", "\ufffd")[:1000],
        "query": redact_query(req.query_string, state.sensitive),
        "status": response.status_code, "duration_ms": round(elapsed_ms, 3), "notes": notes,
        "user_agent": req.environ.get("HTTP_USER_AGENT", "").replace("\x00", "\ufffd")[:300]
        or None,
        "request_body": _request_body(state, req),
        "response_body": _response_body(state, req, response, response_raw),
    }
    state.add(row)


def prune(session: Session | Connection, directory_id: str, keep: int,
          older_than: datetime) -> None:
    """Delete the directory's records beyond the newest ``keep`` and all records too old."""
    boundary = (select(ScimRequest.id).where(ScimRequest.directory_id == directory_id)
                .order_by(ScimRequest.id.desc()).offset(keep).limit(1).scalar_subquery())
    session.execute(delete(ScimRequest).where(ScimRequest.directory_id == directory_id,
                                              ScimRequest.id <= boundary))
    session.execute(delete(ScimRequest).where(ScimRequest.created_at < older_than))


def prune_aged(db: Database, older_than: datetime, batch_size: int, *,
               max_batches: int | None = None) -> tuple[int, bool]:
    """Delete the records older than ``older_than``, whatever their directory, a batch per
    transaction; how many, and whether ``max_batches`` stopped it with some left.

    The age bound as requests arrive holds only while some arrive: `roster worker` runs
    this, so a deployment gone quiet (an IdP disconnected, a directory disabled) does not
    keep the bodies it recorded last for good. On PostgreSQL rows a recorder's own prune is
    deleting are skipped (it deletes them), so the two never wait on each other in turn.
    """
    pick = select(ScimRequest.id).where(ScimRequest.created_at < older_than) \
        .order_by(ScimRequest.created_at)
    return delete_in_batches(db, pick, lambda ids: delete(ScimRequest).where(
        ScimRequest.id.in_(ids)), batch_size, max_batches=max_batches)


def requests_query(directory_id: str, *, failed: bool = False) -> Select[tuple[ScimRequest]]:
    """The directory's recorded requests, unordered; ``failed`` keeps status >= 400. Listed
    newest first (by id: ix_scim_requests_directory_id_id)."""
    query = select(ScimRequest).where(ScimRequest.directory_id == directory_id)
    if failed:
        query = query.where(ScimRequest.status >= 400)
    return query


def list_requests(session: Session, directory_id: str, *, failed: bool = False,
                  limit: int = 50) -> list[ScimRequest]:
    """The directory's recorded requests, newest first; ``failed`` keeps status >= 400."""
    query = requests_query(directory_id, failed=failed)
    return list(session.scalars(query.order_by(ScimRequest.id.desc()).limit(limit)))


def describe(row: ScimRequest) -> dict[str, Any]:
    """One recorded request as JSON-ready data."""
    return {
        "id": row.id, "at": row.created_at.isoformat(), "request_id": row.request_id,
        "method": row.method, "path": row.path, "query": row.query, "status": row.status,
        "duration_ms": row.duration_ms, "notes": list(row.notes or []),
        "user_agent": row.user_agent, "request_body": row.request_body,
        "response_body": row.response_body,
    }
