"""PostgreSQL: a purge that commits while a feed page is being read, between the page's
epoch and its SELECT, deleting events of the page's window that the cursor had not read.
Each statement sees what was committed when it began (READ COMMITTED): the page does not
list them, and the next cursor's window passed them, so the next check found nothing
unread and the reader went on without them. Now the page itself is 410 cursor_expired."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.api.conftest import make_key
from tests.events.retention_support import age, purge, write
from tests.events.test_retention_feed import _names, _page


@pytest.fixture(autouse=True)
def _postgresql_only(dialect: str) -> None:
    if dialect != "postgresql":
        pytest.skip("SQLite reads a page in one snapshot: no purge commits inside it")


def test_a_purge_committing_under_a_page_expires_the_cursor_never_skips(client, db, tenant):
    portal = make_key(db, "portal", tenant.org)
    write(db, tenant, "e1", "e2", "e3")
    first = _page(client, portal, limit=1)
    assert _names(first) == ["e1"]
    cursor = first.get_json()["next_cursor"]
    age(db)
    fired: list[int] = []

    def _purge_before_the_page(_conn, _cursor, statement, _params, _context, _many) -> None:
        # The feed's page: its events by id order, after the epoch was read.
        if not fired and statement.lstrip().startswith("SELECT outbox_events.id, ") \
                and "outbox_events.payload" in statement:
            fired.append(purge(db).events)  # another connection: e2 (e3 is the newest)

    sa.event.listen(db.engine, "before_cursor_execute", _purge_before_the_page)
    try:
        during = _page(client, portal, cursor)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", _purge_before_the_page)
    assert fired == [2]  # e1 and e2
    # Before: 200 with e3 alone, and a cursor the next page took on without a 410.
    assert during.status_code == 410, _names(during)
    assert _page(client, portal, cursor).status_code == 410
