"""A database moved to another PostgreSQL cluster with pg_dump and pg_restore: a stored feed
cursor and the webhook fan-out cursor resume where they stood, on a real second cluster."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.db import Database, utcnow
from app.events import emit
from app.events.delivery import WebhookConfig, fan_out
from app.events.feed import FeedPosition, events_after
from app.migrate import upgrade
from tests import pg_server
from tests.conftest import make_tenant

HOOK = "http://127.0.0.1:9/hook"
CONFIG = WebhookConfig(urls=(HOOK,), secret="s3cret-for-tests")
# Transaction ids a fresh cluster does not reach in this test (initdb and a restore take a
# few thousand): the first cluster's events get higher ones, as a busy production's do.
FIRST_CLUSTER_XIDS = 20000


def _burn_xids(db: Database, upto: int) -> None:
    """Advance the cluster's transaction ids to ``upto`` (each subtransaction that writes
    takes one: fast, in one statement)."""
    with db.engine.begin() as conn:
        left = upto - conn.scalar(sa.text("SELECT pg_current_xact_id()::text::bigint"))
        if left > 0:
            conn.execute(sa.text(
                "DO $$ BEGIN CREATE TEMP TABLE burn (n int); "
                f"FOR i IN 1..{int(left)} LOOP BEGIN INSERT INTO burn VALUES (i); "
                "EXCEPTION WHEN OTHERS THEN NULL; END; END LOOP; DROP TABLE burn; END $$"))


def _libpq(url: str) -> str:
    return sa.engine.make_url(url).set(drivername="postgresql").render_as_string(False)


def _emit(db: Database, org_id: str, name: str) -> None:
    with db.transaction() as session:
        emit(session, organization_id=org_id, type="test.event", aggregate_id=name,
             payload={"name": name})


def _read(db: Database, position: FeedPosition) -> tuple[list[str], FeedPosition]:
    """Every page after ``position``, as a portal polls; the event names and the cursor
    (through its JSON form, as the portal stores it)."""
    names: list[str] = []
    while True:
        with db.transaction() as session:
            items, position = events_after(session, position, limit=2)
        position = FeedPosition.from_values(json.loads(json.dumps(position.values())))
        names += [e["data"]["name"] for e in items if e["type"] == "test.event"]
        if not items:
            return names, position


def _fan_out(db: Database) -> list[str]:
    """One fan-out round; every event fanned out to the hook so far, in delivery order."""
    with db.transaction() as session:
        fan_out(session, CONFIG, utcnow())
    with db.engine.connect() as conn:
        return list(conn.scalars(sa.text(
            "SELECT o.aggregate_id FROM webhook_deliveries d JOIN outbox_events o ON "
            "o.id = d.outbox_id WHERE o.type = 'test.event' ORDER BY d.id")))


def _move(source_url: str, server_url: str, dump: Path) -> str:
    """pg_dump the database at ``source_url`` and pg_restore it as ``moved`` on the server
    at ``server_url``; the new database's URL."""
    subprocess.run([pg_server.pg_bin("pg_dump"), "-Fc", "-f", str(dump), _libpq(source_url)],
                   check=True)
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text('CREATE DATABASE "moved"'))
    admin.dispose()
    target = sa.engine.make_url(server_url).set(database="moved").render_as_string(False)
    subprocess.run([pg_server.pg_bin("pg_restore"), "--no-owner", "-d", _libpq(target),
                    str(dump)], check=True)
    return target


def test_cursors_resume_on_another_cluster_after_a_dump_and_restore(fresh_url, tmp_path):
    """Restored rows keep the first cluster's txids and the cursors its snapshots, while the
    new cluster counts its own transactions from far below: a stored feed cursor skipped
    every event written after the move, and a reader from the start saw none of the restored
    ones. Now an event pending at the move and one written after it come once each, to the
    feed cursor and the fan-out alike, and the history is whole from the start."""
    if not os.environ.get("ROSTER_TEST_PG_URL"):
        pytest.skip("transaction ids and clusters are PostgreSQL's")
    upgrade(fresh_url)
    first = Database(fresh_url)
    roots: list[str] = []
    moved: list[Database] = []

    def move(source: str, name: str) -> Database:
        server, root = pg_server.start()
        roots.append(root)
        moved.append(Database(_move(source, server, tmp_path / f"{name}.dump")))
        return moved[-1]

    try:
        _burn_xids(first, FIRST_CLUSTER_XIDS)
        org_id = make_tenant(first, "acme").org.id
        for name in ("e1", "e2", "e3"):
            _emit(first, org_id, name)
        seen, cursor = _read(first, FeedPosition())
        assert seen == ["e1", "e2", "e3"]
        assert _fan_out(first) == ["e1", "e2", "e3"]
        _emit(first, org_id, "e4")  # pending for both cursors at the move

        second = move(fresh_url, "second")
        _emit(second, org_id, "e5")
        with second.engine.connect() as conn:
            txid = conn.scalar(sa.text(
                "SELECT txid FROM outbox_events WHERE aggregate_id = 'e5'"))
        assert cursor.done is not None
        assert txid < cursor.done.xmin  # the case at hand: the new cluster counts from below

        after_move, cursor = _read(second, cursor)
        assert after_move == ["e4", "e5"]
        assert _read(second, FeedPosition())[0] == ["e1", "e2", "e3", "e4", "e5"]
        assert _fan_out(second) == ["e1", "e2", "e3", "e4", "e5"]
        _emit(second, org_id, "e6")
        after_e6, cursor = _read(second, cursor)
        assert after_e6 == ["e6"]
        assert _fan_out(second) == ["e1", "e2", "e3", "e4", "e5", "e6"]

        # Moved again: the first cluster's rows, restored twice, stay read; the second's
        # are decided by the cursor's txids (a third fresh cluster counts from about where the
        # second did).
        _emit(second, org_id, "e7")
        third = move(second.url, "third")
        _emit(third, org_id, "e8")
        assert _read(third, cursor)[0] == ["e7", "e8"]
        assert _fan_out(third) == ["e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8"]
        assert _read(third, FeedPosition())[0] == [f"e{i}" for i in range(1, 9)]
    finally:
        for database in (first, *moved):
            database.dispose()
        for root in roots:
            pg_server.stop(root)
