"""The delivery worker holds no write transaction (no lock) while a webhook POST is in
flight, and the lifecycle, audit and events code does no network I/O of its own."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

from app.events.worker import run_once
from app.lifecycle import Trigger, deprovision_user
from app.models import User
from tests.conftest import OPERATOR, rows
from tests.events.receiver import running_receiver
from tests.events.test_webhooks import _config, _leavers
from tests.lifecycle.support import make_leaver
from tests.sso.lockprobe import can_write

APP = Path(__file__).resolve().parents[2] / "app"
NETWORK_MODULES = {"urllib.request", "http.client", "socket", "requests", "httpx", "aiohttp",
                   "smtplib", "ssl"}


def test_the_database_is_free_while_the_worker_waits_on_the_receiver(db, tenant):
    """While the receiver holds the POST open: the delivery and cursor rows are writable by
    another connection at once (SQLite: its write lock is free), and a deprovisioning commits;
    then the worker records the results."""
    _leavers(db, tenant, 1)
    bystander = make_leaver(db, tenant, "bystander").user_id
    with running_receiver(hang_on=1) as receiver:
        worker = threading.Thread(target=run_once, args=(db, _config(receiver.url), "probe"))
        worker.start()
        try:
            assert receiver.hanging.wait(30), "the worker never posted"
            assert can_write(db, "UPDATE webhook_deliveries SET last_error = last_error")
            assert can_write(db, "UPDATE webhook_cursors SET last_outbox_id = last_outbox_id")
            with db.transaction() as session:
                deprovision_user(session, session.get(User, bystander), OPERATOR,
                                 trigger=Trigger.operator)
        finally:
            receiver.release.set()
            worker.join(30)
    assert not worker.is_alive()
    assert rows(db, "SELECT status FROM users WHERE id = :u", u=bystander)[0][0] == \
        "deprovisioned"
    assert rows(db, "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'"
                )[0][0] >= 1


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    names |= {node.module for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module}
    return names


def test_only_the_worker_loop_talks_to_the_network():
    """app/lifecycle, app/audit and app/events import no network client (nor
    app/http_deadline.py) except app/events/posting.py, whose POST the worker loop sends
    between its transactions (checked above), and which no other module imports."""
    offenders = {str(path.relative_to(APP)): sorted(_imports(path) & NETWORK_MODULES)
                 for package in ("lifecycle", "audit", "events")
                 for path in sorted((APP / package).rglob("*.py"))}
    offenders = {name: mods for name, mods in offenders.items() if mods}
    assert offenders == {"events/posting.py": ["urllib.request"]}
    users = {str(path.relative_to(APP)) for path in APP.rglob("*.py")
             if "app.events.posting" in _imports(path)}
    assert users == {"events/worker.py"}
    # Its sockets come from app/http_deadline.py, which no other domain module imports.
    deadline_users = {str(path.relative_to(APP))
                      for package in ("lifecycle", "audit", "events")
                      for path in (APP / package).rglob("*.py")
                      if "app.http_deadline" in _imports(path)}
    assert deadline_users == {"events/posting.py"}
