"""Webhook URLs whose secret is a label of the host name (an AWS Lambda function URL's id, a
request bin's ``<id>.m.pipedream.net``: anyone with the host can POST to the receiver). The
tables, `roster events`, the API and the log showed the host in clear, though they masked a
userinfo, a query token or a path token; now the label is fingerprinted like an opaque path
segment, and migration 0030 renames the endpoints stored before."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from app.migrate import downgrade, upgrade
from app.url_masks import masked_url
from tests.events.receiver import SECRET, running_receiver
from tests.events.test_webhook_credentials import shown_by_keys
from tests.lifecycle.support import make_leaver, roster

BIN = "eo1k9xz7y3abc5de"  # a request bin's id: 16 lower-case letters and digits
LAMBDA = "abcdefghij0123456789klmnopqrstuv"  # a Lambda function URL's id: 32 of them


def _masked(label: str) -> str:
    return "***" + hashlib.sha256(label.lower().encode()).hexdigest()[:6]


def _clean(text: str) -> None:
    for secret in (BIN, LAMBDA):
        assert secret not in text
        assert secret.upper() not in text


@pytest.mark.parametrize(("url", "shown"), [
    (f"https://{LAMBDA}.lambda-url.eu-west-1.on.aws/",
     f"https://{_masked(LAMBDA)}.lambda-url.eu-west-1.on.aws/"),
    (f"https://u:p@{BIN.upper()}.m.pipedream.net:8443/in?token=t",
     f"https://***@{_masked(BIN)}.m.pipedream.net:8443/in?token=***"),
    # The last two labels name the service and stay, as do short or word-like labels.
    (f"https://hooks.{BIN}.net/in", f"https://hooks.{BIN}.net/in"),
    ("https://hooks-eu.prod.example.com/in", "https://hooks-eu.prod.example.com/in"),
    ("http://127.0.0.1:8080/in", "http://127.0.0.1:8080/in"),
    ("http://[::1]:8080/in", "http://[::1]:8080/in"),
])
def test_an_opaque_host_label_is_fingerprinted_and_a_key_is_its_own_key(url, shown):
    """Table: which host labels are masked; masking a key changes nothing."""
    assert masked_url(url) == shown
    assert masked_url(shown) == shown


def test_a_secret_host_label_is_never_stored_or_shown(db, tenant, database_url, client):
    """One endpoint reachable, one a request bin's host (not resolvable here: its delivery
    stays pending with its error): the deliveries, cursors, last error, `roster events
    deliveries`, the API and the worker's log show the bin's id fingerprinted, never in
    clear; `roster events reset-cursor` takes the URL or the key."""
    make_leaver(db, tenant)
    roster(database_url, "lifecycle", "deprovision", "--org", "acme", "leaver")
    bin_url = f"http://{BIN}.m.pipedream.invalid/in"
    with running_receiver() as receiver:
        up_url = f"http://127.0.0.1:{receiver.port}/in"
        worked = roster(database_url, "worker", "--until-idle",
                        ROSTER_WEBHOOKS__URLS=f"{up_url},{bin_url}",
                        ROSTER_WEBHOOKS__SECRET=SECRET, ROSTER_LOGGING__FORMAT="text")
    bin_key = f"http://{_masked(BIN)}.m.pipedream.invalid/in"
    for shown in shown_by_keys(db, client, database_url, up_url, bin_key):
        _clean(shown)
    assert f"{bin_key}: pending" in worked.output
    _clean(worked.output)
    reset = roster(database_url, "events", "reset-cursor", bin_url)
    assert reset.output.strip() == \
        f"fan-out to {bin_key} starts again from the oldest event kept"
    _clean(reset.output)


def _store(url: str, endpoints: dict[str, str]) -> None:
    """One event, and per endpoint a delivery of it in the given status and a cursor."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO outbox_events (event_id, type, payload, created_at) "
            "VALUES ('ev1', 'test.event', '{}', CURRENT_TIMESTAMP)"))
        for endpoint, status in endpoints.items():
            conn.execute(sa.text(
                "INSERT INTO webhook_deliveries (outbox_id, event_id, endpoint, status, "
                "attempts, created_at, next_attempt_at) VALUES (1, 'ev1', :u, :s, 0, "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"), {"u": endpoint, "s": status})
            conn.execute(sa.text("INSERT INTO webhook_cursors (endpoint, last_outbox_id, "
                                 "purge_epoch) VALUES (:u, 1, 0)"), {"u": endpoint})
    engine.dispose()


def _stored(url: str) -> tuple[list[tuple[str, str]], list[str]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        deliveries = sorted(tuple(r) for r in conn.execute(sa.text(
            "SELECT endpoint, status FROM webhook_deliveries")))
        cursors = sorted(conn.scalars(sa.text("SELECT endpoint FROM webhook_cursors")))
    engine.dispose()
    return deliveries, cursors


def test_0030_names_stored_endpoints_by_their_new_keys(fresh_url):
    """Rows of 0029: a Lambda function URL gets its new key; the same bin's host written in
    two cases is one endpoint (its delivered delivery kept, its cursors dropped, so it reads
    the retained outbox again); a plain URL stays. The downgrade keeps the keys, and
    upgrading again changes nothing."""
    upgrade(fresh_url, "0029")
    lambda_url = f"https://{LAMBDA}.lambda-url.eu-west-1.on.aws/"
    plain = "https://plain.example/in?channel=ops"
    _store(fresh_url, {lambda_url: "pending", plain: "pending",
                       f"https://{BIN}.m.pipedream.net/in": "dead",
                       f"https://{BIN.upper()}.m.pipedream.net/in": "delivered"})
    upgrade(fresh_url)
    lambda_key = f"https://{_masked(LAMBDA)}.lambda-url.eu-west-1.on.aws/"
    bin_key = f"https://{_masked(BIN)}.m.pipedream.net/in"
    expected = ([(bin_key, "delivered"), (lambda_key, "pending"), (plain, "pending")],
                sorted([lambda_key, plain]))
    assert _stored(fresh_url) == expected
    downgrade(fresh_url, "0029")
    assert _stored(fresh_url) == expected
    upgrade(fresh_url)
    assert _stored(fresh_url) == expected
