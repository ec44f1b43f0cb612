"""A dead-lettered webhook keeps its user's later events behind it (bug hunt, MEDIUM).

A user joins Buyers-EU while the portal's receiver is down: user.created and grant.added go
dead. The receiver comes back; the user leaves the group (grant.removed, user.suspended).
Only pending deliveries used to hold a user's later ones back, so those two went out at
once, and the operator's `roster events redeliver` of the dead ones sent the grant last:
the portal kept a buyer grant Roster had taken away. Real receiver, real `roster worker`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from app.directory.organizations import add_unit
from app.events.delivery import HELD, WebhookConfig
from app.events.worker import run_once
from app.lifecycle import Trigger, deprovision_user
from app.mapping.preview import apply_ruleset
from app.mapping.ruleset import parse_document
from app.models import Organization, User
from tests.conftest import OPERATOR, rows
from tests.events.receiver import SECRET, running_receiver
from tests.lifecycle.support import make_leaver, roster
from tests.scim.support import PATCH_OP, Scim

ROSTER = str(Path(sys.executable).parent / "roster")
DEAD_AFTER = 4
RULES = {"policy": {"on_loss": "suspend"}, "rules": [
    {"id": "eu-buyers", "role": "buyer", "unit": "Purchasing",
     "match": {"group": "Buyers-EU"}}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(database_url: str, url: str) -> None:
    """`roster worker --until-idle` once, with dead letters after DEAD_AFTER seconds."""
    env = {**os.environ, "ROSTER_DATABASE__URL": database_url, "ROSTER_APP__ENV": "test",
           "ROSTER_WEBHOOKS__URLS": url, "ROSTER_WEBHOOKS__SECRET": SECRET,
           "ROSTER_WEBHOOKS__DEAD_AFTER_SECONDS": str(DEAD_AFTER),
           "ROSTER_WEBHOOKS__RETRY_BASE_SECONDS": "1", "ROSTER_WEBHOOKS__RETRY_MAX_SECONDS": "1",
           "ROSTER_WEBHOOKS__TIMEOUT_SECONDS": "2", "ROSTER_WEBHOOKS__LEASE_SECONDS": "7",
           "ROSTER_WEBHOOKS__POLL_INTERVAL_MS": "50"}
    subprocess.run([ROSTER, "worker", "--until-idle"], env=env, check=True, timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _config(url: str, **overrides: int) -> WebhookConfig:
    settings = {"timeout_seconds": 5, "retry_base_seconds": 1, "retry_max_seconds": 2,
                "dead_after_seconds": 3600, "lease_seconds": 30, "batch_size": 50,
                "poll_interval_ms": 50, **overrides}
    return WebhookConfig(urls=(url,), secret=SECRET, **settings)


def _leaver(db: Any, tenant: Any) -> str:
    """A user with grants and a session, deprovisioned: a burst of events of one user."""
    user_id = make_leaver(db, tenant, "leaver").user_id
    with db.transaction() as session:
        deprovision_user(session, session.get(User, user_id), OPERATOR,
                         trigger=Trigger.scim_active_false)
    return user_id


def _membership(scim: Scim, group_id: str, op: str, user_id: str) -> None:
    change = {"op": op, "path": "members", "value": [{"value": user_id}]} if op == "add" \
        else {"op": "remove", "path": f'members[value eq "{user_id}"]'}
    response = scim.patch(f"/Groups/{group_id}", {"schemas": [PATCH_OP],
                                                  "Operations": [change]})
    assert response.status_code in (200, 204), response.get_json()


def _user_events(db: Any, user_id: str) -> list[tuple[str, str]]:
    return [(r.event_id, r.type) for r in rows(
        db, "SELECT event_id, type FROM outbox_events WHERE aggregate_id = :u ORDER BY id",
        u=user_id)]


def test_a_dead_letter_holds_its_users_later_events_and_redelivers_them_in_order(
        db, client, tenant, database_url):
    """The grant.removed and user.suspended of a user whose grant.added is dead wait dead
    behind it; `roster events redeliver` of the dead letters sends the user's events in
    order, so the portal ends with the user suspended and holding no grant, as Roster."""
    with db.transaction() as s:
        org = s.get(Organization, tenant.org.id)
        add_unit(s, org, "Purchasing", "department", None, OPERATOR)
        apply_ruleset(s, org, parse_document(RULES), OPERATOR, max_loss_share=1, force=True)
    scim = Scim(client, tenant)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/hooks"
    group = scim.create_group("Buyers-EU")["id"]
    user = scim.create_user("ann@acme.example")["id"]
    _membership(scim, group, "add", user)
    assert [t for _, t in _user_events(db, user)] == ["user.created", "grant.added"]

    _worker(database_url, url)  # the receiver is down: first attempts fail
    time.sleep(DEAD_AFTER + 0.5)
    _worker(database_url, url)  # past dead_after_seconds: dead letters
    assert {r.status for r in rows(db, "SELECT status FROM webhook_deliveries")} == {"dead"}

    with running_receiver(port=port) as receiver:
        _membership(scim, group, "remove", user)
        assert [t for _, t in _user_events(db, user)][2:] == ["grant.removed",
                                                              "user.suspended"]
        _worker(database_url, url)
        # Nothing of the user passes its dead grant.added: held dead behind its first event.
        later = {e for e, t in _user_events(db, user) if t in ("grant.removed",
                                                                "user.suspended")}
        assert not later & set(receiver.processed)
        held = rows(db, "SELECT d.id, d.status, d.last_error FROM webhook_deliveries d JOIN "
                        "outbox_events o ON o.id = d.outbox_id WHERE o.type IN "
                        "('grant.removed', 'user.suspended') ORDER BY d.id")
        assert [r.status for r in held] == ["dead", "dead"]
        assert all(r.last_error.startswith("held behind dead delivery ") for r in held)
        listed = roster(database_url, "events", "deliveries", "--dead").output
        assert "held behind dead delivery" in listed

        # The operator sends every dead letter again, as listed (id order).
        for (delivery_id,) in rows(db, "SELECT id FROM webhook_deliveries WHERE status = "
                                       "'dead' ORDER BY id"):
            roster(database_url, "events", "redeliver", str(delivery_id))
        _worker(database_url, url)

    expected = _user_events(db, user)
    got = [e for e in receiver.processed if e in dict(expected)]
    assert got == [e for e, _ in expected]
    assert rows(db, "SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'"
                )[0][0] == 0
    kinds = dict(expected)
    last_grant = [kinds[e] for e in got if kinds[e].startswith("grant.")][-1]
    assert last_grant == "grant.removed"
    assert rows(db, "SELECT status FROM users WHERE id = :u", u=user)[0][0] == "suspended"
    assert rows(db, "SELECT count(*) FROM grants WHERE user_id = :u", u=user)[0][0] == 0


def test_a_held_letter_redelivered_alone_waits_for_the_dead_one_before_it(
        db, tenant, database_url):
    """Redelivering a letter held behind an older dead one queues it, says what it waits
    for, and sends nothing of that user until the older one is redelivered; then all go,
    in order."""
    user = _leaver(db, tenant)
    with running_receiver(fail_first=1000) as receiver:
        run_once(db, _config(receiver.url, dead_after_seconds=0), "test-worker")
        dead = rows(db, "SELECT d.id, d.last_error FROM webhook_deliveries d WHERE "
                        "d.aggregate_id = :u ORDER BY d.id", u=user)
        assert len(dead) >= 3
        assert dead[0].last_error != HELD.format(dead[0].id)
        assert {r.last_error for r in dead[1:]} == {HELD.format(dead[0].id)}
        said = roster(database_url, "events", "redeliver", str(dead[1].id)).output
        assert f"waits behind dead delivery {dead[0].id}" in said
        receiver.fail_first = 0
        config = _config(receiver.url)
        while run_once(db, config, "test-worker"):
            pass
        sent = {e for e, _ in _user_events(db, user)}
        assert not sent & set(receiver.processed)
        said = roster(database_url, "events", "redeliver", str(dead[0].id)).output
        assert said.startswith(f"delivery {dead[0].id} queued")
        while run_once(db, config, "test-worker"):
            pass
    expected = [e for e, _ in _user_events(db, user)]
    assert [e for e in receiver.processed if e in expected] == expected
