"""The ceiling for bench/scim_bench.py: bare Flask doing one SQLite statement per request.

Served by the same gunicorn settings as Roster (config/gunicorn.conf.py, 2 workers), with the
same SQLite pragmas (WAL, synchronous=NORMAL, busy_timeout, BEGIN IMMEDIATE for writers), so
the Roster/ceiling ratio measures what Roster adds on top of "HTTP + JSON + one statement".

``POST /items/audited`` is a second ceiling for creates, the one issue 4's notes asked for:
the writes a Roster create cannot do without, in one transaction, and nothing else: the
row, an audit record chained to the previous one by SHA-256 (the chain head read and moved,
as app/audit/log.py does) and an outbox event. bench/compare.py names it
``ceiling-writes``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable

from flask import Flask, Response, request

DB_PATH = os.environ.get("CEILING_DB", "/tmp/ceiling.db")
_local = threading.local()


def _conn() -> sqlite3.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _connect()
        conn.execute("PRAGMA synchronous=NORMAL")
        _local.conn = conn
    return conn


def _connect() -> sqlite3.Connection:
    # The busy timeout first: every later statement may meet another thread's lock.
    conn = sqlite3.connect(DB_PATH, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def _create_schema() -> None:
    # Once, in the gunicorn master before it forks: eight threads switching a new file to
    # WAL and creating its table at once made one of them fail with "database is locked".
    conn = _connect()
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, name TEXT "
                 "NOT NULL, body TEXT NOT NULL)")
    conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS ix_items_name ON items (lower(name))")
    conn.execute("CREATE TABLE IF NOT EXISTS heads (chain TEXT PRIMARY KEY, seq INTEGER "
                 "NOT NULL, hash TEXT NOT NULL)")
    conn.execute("CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                 "event_id TEXT NOT NULL UNIQUE, chain TEXT NOT NULL, seq INTEGER NOT NULL, "
                 "action TEXT NOT NULL, subject_id TEXT NOT NULL, data TEXT NOT NULL, "
                 "prev_hash TEXT NOT NULL, hash TEXT NOT NULL, UNIQUE (chain, seq))")
    conn.execute("CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                 "event_id TEXT NOT NULL UNIQUE, type TEXT NOT NULL, payload TEXT NOT NULL)")
    conn.close()


def _audited_insert(conn: sqlite3.Connection, item_id: str, payload: dict) -> None:
    """The row, its chained audit record and its outbox event (one open transaction)."""
    conn.execute("INSERT INTO items (id, name, body) VALUES (?, ?, ?)",
                 (item_id, payload["userName"], json.dumps(payload)))
    head = conn.execute("SELECT seq, hash FROM heads WHERE chain = 'org'").fetchone()
    seq, prev = (head[0] + 1, head[1]) if head else (1, "0" * 64)
    record = {"event_id": str(uuid.uuid4()), "chain": "org", "seq": seq,
              "action": "user:create", "subject_id": item_id,
              "data": {"user_name": payload["userName"]}, "prev_hash": prev}
    digest = hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":"))
                            .encode()).hexdigest()
    conn.execute("INSERT INTO audit (event_id, chain, seq, action, subject_id, data, "
                 "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 (record["event_id"], "org", seq, record["action"], item_id,
                  json.dumps(record["data"]), prev, digest))
    conn.execute("INSERT INTO heads (chain, seq, hash) VALUES ('org', ?, ?) ON CONFLICT "
                 "(chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                 (seq, digest))
    conn.execute("INSERT INTO outbox (event_id, type, payload) VALUES (?, ?, ?)",
                 (str(uuid.uuid4()), "user.created", json.dumps(payload)))


def _create(write: Callable[[sqlite3.Connection, str, dict], object]) -> Response:
    """A create: ``write`` in one write transaction, the payload back with its new id."""
    payload = request.get_json(force=True)
    item_id = str(uuid.uuid4())
    conn = _conn()
    conn.execute("BEGIN IMMEDIATE")
    try:
        write(conn, item_id, payload)
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise
    payload["id"] = item_id
    return Response(json.dumps(payload), status=201, mimetype="application/json")


def create_app() -> Flask:
    """The ceiling app: POST /items inserts one row, GET /items?name= selects one."""
    _create_schema()
    app = Flask(__name__)

    @app.post("/items")
    def create() -> Response:
        return _create(lambda conn, item_id, payload: conn.execute(
            "INSERT INTO items (id, name, body) VALUES (?, ?, ?)",
            (item_id, payload["userName"], json.dumps(payload))))

    @app.post("/items/audited")
    def create_audited() -> Response:
        return _create(_audited_insert)

    @app.get("/items")
    def lookup() -> Response:
        row = _conn().execute("SELECT id, body FROM items WHERE lower(name) = lower(?)",
                              (request.args.get("name", ""),)).fetchone()
        found = [json.loads(row[1]) | {"id": row[0]}] if row else []
        return Response(json.dumps({"totalResults": len(found), "Resources": found}),
                        mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok")

    return app
