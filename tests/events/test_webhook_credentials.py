"""Webhook URLs that carry credentials (a userinfo, a token in the query) keep them in the
settings only: the worker sends them (userinfo as HTTP Basic authentication, RFC 7617), and
the tables, `roster events`, the API and the log name the endpoint with them masked."""

from __future__ import annotations

import base64
import json
import socket

import sqlalchemy as sa

from app.migrate import upgrade
from tests.api.conftest import make_key
from tests.conftest import rows
from tests.events.receiver import SECRET, running_receiver
from tests.lifecycle.support import make_leaver, roster

PASSWORD, TOKEN, DOWN_PASSWORD, CODE = "S3cretPass", "TokS3cret", "DownPass9", "CodeS3cret"
SECRETS = (PASSWORD, TOKEN, DOWN_PASSWORD, CODE)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shown_by_keys(db, client, database_url: str, up_key: str, down_key: str) -> list[str]:
    """The deliveries (the reachable endpoint's delivered, the closed one's pending with its
    last error) and cursors tables, `roster events deliveries` and the API name the two
    endpoints by their keys; returns each text shown, for the caller's check of secrets."""
    stored = rows(db, "SELECT endpoint, status, last_error FROM webhook_deliveries")
    assert {(r.endpoint, r.status) for r in stored} == {(up_key, "delivered"),
                                                        (down_key, "pending")}
    assert sorted(r.endpoint for r in rows(db, "SELECT endpoint FROM webhook_cursors")) == \
        sorted([up_key, down_key])
    assert any(r.last_error for r in stored if r.endpoint == down_key)
    listed = roster(database_url, "events", "deliveries", "--limit", "100").output
    assert up_key in listed
    key = make_key(db, "operator")
    api = client.get("/api/v1/events/deliveries?limit=100", headers=key.headers)
    assert api.status_code == 200
    assert {item["endpoint"] for item in api.get_json()["items"]} == {up_key, down_key}
    return [repr(stored), listed, json.dumps(api.get_json())]


def _clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_credentials_of_webhook_urls_are_sent_but_never_stored_or_shown(
        db, tenant, database_url, client):
    """`roster worker` POSTs with the userinfo as Basic authentication and the query token
    as configured; deliveries, cursors, last errors, `roster events deliveries`, the API and
    the worker's log lines show each URL with its credentials masked."""
    make_leaver(db, tenant)
    roster(database_url, "lifecycle", "deprovision", "--org", "acme", "leaver")
    roster(database_url, "audit", "checkpoint")
    outbox = [r.event_id for r in rows(db, "SELECT event_id FROM outbox_events")]
    down = _closed_port()
    with running_receiver() as receiver:
        port, seen = receiver.port, receiver.requests
        up_url = f"http://hook-user:{PASSWORD}@127.0.0.1:{port}/in?channel=ops&token={TOKEN}"
        down_url = f"http://down:{DOWN_PASSWORD}@127.0.0.1:{down}/in?code={CODE}"
        worked = roster(database_url, "worker", "--until-idle",
                        ROSTER_WEBHOOKS__URLS=f"{up_url},{down_url}",
                        ROSTER_WEBHOOKS__SECRET=SECRET, ROSTER_LOGGING__FORMAT="text")
    assert len(seen) == len(outbox)
    basic = "Basic " + base64.b64encode(f"hook-user:{PASSWORD}".encode()).decode()
    assert {(s["path"], s["headers"]["Authorization"]) for s in seen} == {
        (f"/in?channel=ops&token={TOKEN}", basic)}

    up_key = f"http://***@127.0.0.1:{port}/in?channel=ops&token=***"
    down_key = f"http://***@127.0.0.1:{down}/in?code=***"
    for shown in shown_by_keys(db, client, database_url, up_key, down_key):
        _clean(shown)
    # The failed POST is logged, naming the endpoint by its key (the log masks its "***@").
    assert f"@127.0.0.1:{down}/in?code=***: pending" in worked.output
    _clean(worked.output)

    # The configured URL or its key names the endpoint to reset.
    reset = roster(database_url, "events", "reset-cursor", up_url)
    assert reset.output.strip() == f"fan-out to {up_key} starts again from the oldest event kept"
    assert [r.endpoint for r in rows(db, "SELECT endpoint FROM webhook_cursors")] == [down_key]


def test_urls_that_differ_only_in_credentials_are_refused_without_showing_them(
        database_url):
    """Two entries of webhooks.urls for one endpoint (the same URL with two tokens): the
    worker does not start, and says so without the tokens."""
    urls = f"https://hooks.example/in?token={TOKEN},https://hooks.example/in?token={CODE}"
    result = roster(database_url, "worker", "--until-idle", ok=False,
                    ROSTER_WEBHOOKS__URLS=urls, ROSTER_WEBHOOKS__SECRET=SECRET)
    assert "https://hooks.example/in?token=***" in result.output
    _clean(result.output)


def test_0027_names_stored_endpoints_by_their_keys(fresh_url):
    """Rows of 0026 that hold URLs with credentials get the keys; two URLs that differ only
    in credentials become one endpoint: one delivery per event kept (the delivered one),
    their cursors dropped (the endpoint reads the retained outbox again, no event skipped);
    a URL without credentials is left as it is."""
    upgrade(fresh_url, "0026")
    old, rotated, plain = (f"https://u:{PASSWORD}@hooks.example/in",
                           f"https://u:{DOWN_PASSWORD}@hooks.example/in",
                           "https://plain.example/in?channel=ops")
    engine = sa.create_engine(fresh_url)
    with engine.begin() as conn:
        for n in (1, 2):
            conn.execute(sa.text(
                "INSERT INTO outbox_events (event_id, type, payload, created_at) "
                "VALUES (:e, 'test.event', '{}', CURRENT_TIMESTAMP)"), {"e": f"ev{n}"})
        for endpoint, outbox_id, status in ((old, 1, "delivered"), (old, 2, "dead"),
                                            (rotated, 1, "pending"), (rotated, 2, "pending"),
                                            (plain, 1, "delivered")):
            conn.execute(sa.text(
                "INSERT INTO webhook_deliveries (outbox_id, event_id, endpoint, status, "
                "attempts, created_at, next_attempt_at) VALUES (:o, :e, :u, :s, 0, "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                {"o": outbox_id, "e": f"ev{outbox_id}", "u": endpoint, "s": status})
        for endpoint in (old, rotated, plain):
            conn.execute(sa.text("INSERT INTO webhook_cursors (endpoint, last_outbox_id, "
                                 "purge_epoch) VALUES (:u, 2, 0)"), {"u": endpoint})
    engine.dispose()
    upgrade(fresh_url)
    engine = sa.create_engine(fresh_url)
    with engine.connect() as conn:
        deliveries = sorted(tuple(r) for r in conn.execute(sa.text(
            "SELECT endpoint, outbox_id, status FROM webhook_deliveries")))
        cursors = list(conn.scalars(sa.text("SELECT endpoint FROM webhook_cursors")))
    engine.dispose()
    key = "https://***@hooks.example/in"
    assert deliveries == [(key, 1, "delivered"), (key, 2, "pending"),
                          (plain, 1, "delivered")]
    assert cursors == [plain]
