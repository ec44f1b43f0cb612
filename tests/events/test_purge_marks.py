"""The purge marks (outbox_purges) are pruned, and pruning never lets a cursor read on past
events it had not read: one from before the marks kept is 410 cursor_expired, one issued
since goes on, and an idle webhook URL is not held for it."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.db import utcnow
from app.events.retention import MARKS_KEPT
from app.events.watermark import held_endpoints
from tests.api.conftest import make_key
from tests.conftest import rows
from tests.events.retention_support import DAYS, age, fan_out_to, ids, purge, set_status, write
from tests.events.test_retention_feed import HOOK, _names, _page, _read_all


def _marks(db) -> list[tuple[int, int | None]]:
    return [(r.id, r.pruned_through) for r in
            rows(db, "SELECT id, pruned_through FROM outbox_purges ORDER BY id")]


def test_pruned_marks_expire_an_old_cursor_never_skip_and_leave_current_ones(
        client, db, tenant):
    """A reader read e1..e4 and stopped. The purge took e5 and e6 (P1), which it had not
    read, while e1..e4 stayed for their pending deliveries; later they were delivered and
    purged too (P2), behind the reader. Once P1 is pruned, P2 alone would say the reader
    passed everything purged: it must still be refused. A reader issued after P1 goes on;
    the webhook URL, idle since before P1, is moved on and not held."""
    portal = make_key(db, "portal", tenant.org)
    e1, e2, e3, e4, e5, e6, e7 = write(db, tenant, "e1", "e2", "e3", "e4", "e5", "e6", "e7")
    first = _page(client, portal, limit=4)
    assert _names(first) == ["e1", "e2", "e3", "e4"]
    stale = first.get_json()["next_cursor"]
    fan_out_to(db, HOOK)  # pending deliveries for all seven
    set_status(db, "delivered", e5, e6, e7)
    age(db)
    assert purge(db, HOOK).events == 2  # P1: e5, e6 (e1..e4 pending; e7 the newest)
    names, current = _read_all(client, portal)  # a reader issued after P1
    assert names == ["e1", "e2", "e3", "e4", "e7"]
    set_status(db, "delivered", e1, e2, e3, e4)
    age(db)
    assert purge(db, HOOK).events == 4  # P2: e1..e4
    [(p1, floor1), (p2, floor2)] = _marks(db)
    assert floor1 is None
    assert floor2 is None
    assert _page(client, portal, stale).status_code == 410

    # Nothing is old enough yet: no mark goes.
    assert purge(db, HOOK, now=utcnow() + timedelta(days=MARKS_KEPT * DAYS - 1)).marks == 0
    later = purge(db, HOOK, now=utcnow() + timedelta(days=MARKS_KEPT * DAYS + 1))
    assert later.marks == 1
    assert _marks(db) == [(p2, p1)]  # the newest stays, and records the epoch pruned

    assert _page(client, portal, stale).status_code == 410  # not read on past e5, e6
    with db.transaction() as session:
        assert held_endpoints(session, (HOOK,)) == []
    assert rows(db, "SELECT purge_epoch FROM webhook_cursors")[0].purge_epoch == p2
    write(db, tenant, "e8")
    assert _read_all(client, portal, current)[0] == ["e8"]
    fan_out_to(db, HOOK)
    assert ids(db, "webhook_deliveries")[-1] == ids(db, "outbox_events")[-1]  # e8's


def test_a_prune_drops_at_most_a_batch_and_never_the_newest_mark(client, db, tenant):
    """Marks go oldest first, a batch per run; the newest (the current epoch) stays."""
    for n in range(4):
        write(db, tenant, f"a{n}", f"b{n}")
        age(db)
        assert purge(db).events == (1 if n == 0 else 2)
    assert len(_marks(db)) == 4
    future = utcnow() + timedelta(days=MARKS_KEPT * DAYS + 1)
    assert purge(db, batch=2, now=future).marks == 2
    assert purge(db, batch=2, now=future).marks == 1
    assert purge(db, batch=2, now=future).marks == 0
    [(newest, floor)] = _marks(db)
    assert floor is not None
    assert floor < newest
    portal = make_key(db, "portal", tenant.org)
    write(db, tenant, "fresh")
    assert _read_all(client, portal)[0][-1] == "fresh"


def test_no_mark_is_pruned_while_a_fan_out_holds_a_cursor_behind_them(db, tenant, dialect):
    """PostgreSQL: a fan-out in flight holds its cursor's row lock and may be between
    reading the marks and the floor. The prune cannot move that cursor, so it prunes
    nothing this run (before: it skipped the cursor and pruned, and the fan-out read a
    floor past its epoch: held for good, though it had missed nothing); the next run,
    with the cursor free, moves it and prunes."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer: no fan-out runs beside the prune")
    written = write(db, tenant, "e1", "e2", "e3")
    fan_out_to(db, HOOK)
    set_status(db, "delivered", *written)
    age(db)
    assert purge(db, HOOK).events == 2  # P1; the cursor's epoch stays 0 (nothing new)
    write(db, tenant, "e4")
    age(db)
    assert purge(db).events == 1  # P2: e3 (e4 is the newest)
    future = utcnow() + timedelta(days=MARKS_KEPT * DAYS + 1)
    with db.engine.connect() as fan_out_in_flight, fan_out_in_flight.begin():
        fan_out_in_flight.execute(sa.text(
            "SELECT 1 FROM webhook_cursors WHERE endpoint = :e FOR UPDATE"), {"e": HOOK})
        assert purge(db, HOOK, now=future).marks == 0
    assert purge(db, HOOK, now=future).marks == 1
    with db.transaction() as session:
        assert held_endpoints(session, (HOOK,)) == []
