"""The worker's read-only check for fan-out work (``fan_out_due``, every round of every
worker) costs a constant number of statements whatever the number of webhook URLs; before,
two or three per URL (the purge marks after its cursor's epoch, then whether anything lies
after its cursor)."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from app.events.delivery import WebhookConfig, fan_out_due
from tests.events.retention_support import age, fan_out_to, purge, set_status, write

URLS = tuple(f"http://127.0.0.1:9/hook-{n}" for n in range(8))


def _statements(db, urls: tuple[str, ...]) -> tuple[bool, int]:
    count = [0]
    me = threading.get_ident()

    def _count(*_args) -> None:
        # This thread's only: a background writer of the shared engine (another app's flight
        # recorder flush) once added 4 statements to a full run's count.
        if threading.get_ident() == me:
            count[0] += 1

    sa.event.listen(db.engine, "before_cursor_execute", _count)
    try:
        with db.transaction(readonly=True) as session:
            due = fan_out_due(session, WebhookConfig(urls=urls, secret="s3cret-for-tests"))
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", _count)
    return due, count[0]


def test_the_fan_out_check_costs_the_same_for_one_url_and_for_eight(db, tenant):
    written = write(db, tenant, "one", "two", "three")
    fan_out_to(db, *URLS)
    set_status(db, "delivered", *written)
    age(db)
    assert purge(db, *URLS).events == 2  # a mark after every cursor's epoch: checked
    due_one, one = _statements(db, URLS[:1])
    due_eight, eight = _statements(db, URLS)
    assert (due_one, due_eight) == (False, False)
    assert eight == one, (one, eight)
    write(db, tenant, "four")
    due_one, one = _statements(db, URLS[:1])
    due_eight, eight = _statements(db, URLS)
    assert (due_one, due_eight) == (True, True)
    assert eight == one, (one, eight)
    print(f"fan_out_due: {one} statements for 1 URL, {eight} for {len(URLS)}")  # -s
