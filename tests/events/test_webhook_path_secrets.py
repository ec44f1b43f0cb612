"""Webhook URLs whose secret is in the path (Slack's /services/T.../B.../<token>, a Teams or
Logic Apps id) or in a query parameter not named like a credential: the worker sends the
URL as configured, and the tables, `roster events`, the API and the log show it with each
opaque segment and value masked (``***`` and a fingerprint), never in clear."""

from __future__ import annotations

import hashlib

import sqlalchemy as sa

from app.migrate import upgrade
from tests.conftest import rows
from tests.events.receiver import SECRET, running_receiver
from tests.events.test_webhook_credentials import _closed_port, shown_by_keys
from tests.lifecycle.support import make_leaver, roster

SLACK_TOKEN, DOWN_TOKEN, OTHER_TOKEN = ("aB3dE6gH9jK2mN5pQ8sT1vW4", "Zy9Xw8Vu7Ts6Rq5Po4Nm3Lk2",
                                        "Qq1Ww2Ee3Rr4Tt5Yy6Uu7Ii8")
WORKFLOW = "0123456789abcdef0123456789abcdef"
SECRETS = (SLACK_TOKEN, DOWN_TOKEN, OTHER_TOKEN, WORKFLOW)


def _masked(piece: str) -> str:
    return "***" + hashlib.sha256(piece.encode()).hexdigest()[:6]


def _clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def test_path_secrets_of_webhook_urls_are_sent_but_never_stored_or_shown(
        db, tenant, database_url, client):
    """A Slack-style URL is POSTed to as configured; the deliveries, cursors, last error,
    `roster events deliveries`, the API and the worker's log show its token masked."""
    make_leaver(db, tenant)
    roster(database_url, "lifecycle", "deprovision", "--org", "acme", "leaver")
    down = _closed_port()
    with running_receiver() as receiver:
        port, seen = receiver.port, receiver.requests
        up_url = f"http://127.0.0.1:{port}/services/T0001/B0001/{SLACK_TOKEN}"
        down_url = (f"http://127.0.0.1:{down}/workflows/{WORKFLOW}/invoke"
                    f"?api-version=2016-06-01&id={DOWN_TOKEN}")
        worked = roster(database_url, "worker", "--until-idle",
                        ROSTER_WEBHOOKS__URLS=f"{up_url},{down_url}",
                        ROSTER_WEBHOOKS__SECRET=SECRET, ROSTER_LOGGING__FORMAT="text")
    outbox = rows(db, "SELECT event_id FROM outbox_events")
    assert [s["path"] for s in seen] == [f"/services/T0001/B0001/{SLACK_TOKEN}"] * len(outbox)

    up_key = f"http://127.0.0.1:{port}/services/T0001/B0001/{_masked(SLACK_TOKEN)}"
    down_key = (f"http://127.0.0.1:{down}/workflows/{_masked(WORKFLOW)}/invoke"
                f"?api-version=2016-06-01&id={_masked(DOWN_TOKEN)}")
    for shown in shown_by_keys(db, client, database_url, up_key, down_key):
        _clean(shown)
    assert f"{down_key}: pending" in worked.output
    _clean(worked.output)

    # The configured URL or its key (as shown) names the endpoint to reset.
    reset = roster(database_url, "events", "reset-cursor", down_key)
    assert reset.output.strip() == \
        f"fan-out to {down_key} starts again from the oldest event kept"
    assert [r.endpoint for r in rows(db, "SELECT endpoint FROM webhook_cursors")] == [up_key]


def test_hooks_that_differ_only_in_a_path_secret_stay_two_endpoints(database_url):
    """Two Slack hooks of one workspace differ only in their tokens: both are accepted
    (the fingerprints keep them apart), and a wrong one is refused without its token."""
    urls = (f"https://hooks.slack.com/services/T0001/B0001/{SLACK_TOKEN},"
            f"https://hooks.slack.com/services/T0001/B0001/{OTHER_TOKEN}")
    roster(database_url, "worker", "--until-idle",
           ROSTER_WEBHOOKS__URLS=urls, ROSTER_WEBHOOKS__SECRET=SECRET)
    bad = roster(database_url, "worker", "--until-idle", ok=False,
                 ROSTER_WEBHOOKS__URLS=f"ftp://hooks.example/services/{SLACK_TOKEN}",
                 ROSTER_WEBHOOKS__SECRET=SECRET)
    assert f"ftp://hooks.example/services/{_masked(SLACK_TOKEN)}" in bad.output
    _clean(bad.output)


def test_0029_names_stored_endpoints_by_their_new_keys(fresh_url):
    """Rows of 0028 that hold a URL with a secret path segment get the new key; a URL with
    nothing opaque, and a key of 0027, are left as they are."""
    upgrade(fresh_url, "0028")
    slack = f"https://hooks.slack.com/services/T0001/B0001/{SLACK_TOKEN}"
    plain, masked = ("https://plain.example/in?channel=ops",
                     "https://***@hooks.example/in?token=***")
    engine = sa.create_engine(fresh_url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO outbox_events (event_id, type, payload, created_at) "
            "VALUES ('ev1', 'test.event', '{}', CURRENT_TIMESTAMP)"))
        for endpoint in (slack, plain, masked):
            conn.execute(sa.text(
                "INSERT INTO webhook_deliveries (outbox_id, event_id, endpoint, status, "
                "attempts, created_at, next_attempt_at) VALUES (1, 'ev1', :u, 'pending', 0, "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"), {"u": endpoint})
            conn.execute(sa.text("INSERT INTO webhook_cursors (endpoint, last_outbox_id, "
                                 "purge_epoch) VALUES (:u, 1, 0)"), {"u": endpoint})
    engine.dispose()
    upgrade(fresh_url)
    engine = sa.create_engine(fresh_url)
    with engine.connect() as conn:
        deliveries = sorted(conn.scalars(sa.text("SELECT endpoint FROM webhook_deliveries")))
        cursors = sorted(conn.scalars(sa.text("SELECT endpoint FROM webhook_cursors")))
    engine.dispose()
    key = f"https://hooks.slack.com/services/T0001/B0001/{_masked(SLACK_TOKEN)}"
    assert deliveries == cursors == sorted([key, plain, masked])
