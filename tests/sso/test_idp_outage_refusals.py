"""Refusals the client did not cause (the connection's IdP down or answering 5xx, the
connection disabled) do not count against the client's address (ratelimit.failed_auth):
an office behind one NAT retrying its logins through an IdP outage was answered 429 past
the limit, and its address stayed blocked for the rest of the window after the IdP had
recovered. Their traces are bounded instead: one per connection and reason per
app/sso/fault_traces.py TRACE_INTERVAL_SECONDS, the other refusals showing its correlation
id, counted in /metrics and in the next trace."""

from __future__ import annotations

import json
import re

import portpicker
import pytest
from sqlalchemy import text

from app.db import Database, new_id
from app.models.sso import SsoConnection
from app.sso import fault_traces, idp_cache
from app.sso.oidc_rp import ProviderCache
from tests.conftest import rows
from tests.sso import forge
from tests.sso.conftest import claims_for, post_response, provision, saml_connection, start
from tests.sso.oidc_idp import (
    PORTAL,
    follow_to_roster,
    oidc_connection,
    roster_path,
    start_login,
)
from tests.sso.test_idp_outage_cache import Clock
from tests.sso.test_refusal_flood import _limited

IP = {"REMOTE_ADDR": "203.0.113.77"}
DISCOVERY = "/.well-known/openid-configuration"


def _correlation(resp) -> str:
    """The correlation id on a refusal page (403)."""
    assert resp.status_code == 403, (resp.status_code, resp.text)
    found = re.search(r"id=correlation-id>([^<]+)<", resp.text)
    assert found, resp.text
    return found.group(1)


def _traces(db: Database) -> list:
    return rows(db, "SELECT id, reason, connection_id, payload FROM sso_login_traces "
                    "ORDER BY created_at")


def _untraced(client, reason: str) -> float:
    """roster_sso_refusals_untraced_total{reason} as /metrics says it."""
    text = client.get("/metrics").text
    found = re.search(rf'^roster_sso_refusals_untraced_total{{reason="{reason}"}} (\S+)$',
                      text, re.M)
    return float(found.group(1)) if found else 0.0


def _not_blocked(client, db: Database) -> None:
    """The address's failed-authentication count is untouched: three anonymous refusals
    (unknown connection ids) are each refused and traced, none answered 429."""
    before = len(_traces(db))
    for _ in range(3):
        _correlation(client.get(f"/sso/oidc/{new_id()}/login"))
    assert len(_traces(db)) == before + 3


def test_an_idp_answering_500_at_discovery_never_blocks_the_office(db, tenant, hostile,
                                                                   sso_app):
    """Six logins from one address while the IdP's discovery answers 500 (limit 3): each is
    the refusal page with one correlation id, whose trace (idp_unreachable) is the only row
    written; the five others are counted in /metrics. Once the IdP is back, the address
    signs in (once the failure it remembers is forgotten: app/sso/idp_cache.py), and its
    anonymous refusals are still traced (it was never counted). Before: the fourth login
    got the 429 page, untraced, and so did the office's next refusals for the rest of the
    minute."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    app, clock = _limited(sso_app, db), Clock()
    app.extensions["roster.oidc_providers"] = ProviderCache(clock=clock, private_ok=True)
    client = app.test_client()
    client.environ_base.update(IP)
    hostile.failing = {DISCOVERY: 500}
    ids = [_correlation(client.get(f"/sso/oidc/{conn.id}/login")) for _ in range(6)]
    assert len(set(ids)) == 1
    traces = _traces(db)
    assert [(t.id, t.reason, t.connection_id) for t in traces] == \
        [(ids[0], "idp_unreachable", conn.id)]
    assert _untraced(client, "idp_unreachable") == 5
    hostile.failing = {}
    clock.advance(idp_cache.FAILURE_BACKOFF_MAX_SECONDS)
    _not_blocked(client, db)
    callback = roster_path(follow_to_roster(start_login(client, conn)))
    resp = client.get(callback)
    assert resp.status_code == 303, resp.text
    assert resp.headers["Location"] == PORTAL + "home"
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 1


def test_a_code_exchange_the_idp_answers_500_is_not_the_clients_failure(db, tenant, hostile,
                                                                       sso_app):
    """Five callbacks whose code exchange the IdP's token endpoint answers 500 (limit 3):
    each refused (idp_unreachable) with the first one's correlation id, one trace; then the
    IdP recovers and the same address signs in and is not blocked."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    client = _limited(sso_app, db).test_client()
    client.environ_base.update(IP)
    ids = []
    for _ in range(5):
        callback = roster_path(follow_to_roster(start_login(client, conn)))
        hostile.failing = {"/token": 500}
        ids.append(_correlation(client.get(callback)))
        hostile.failing = {}
    assert len(set(ids)) == 1
    assert [(t.id, t.reason) for t in _traces(db)] == [(ids[0], "idp_unreachable")]
    _not_blocked(client, db)
    callback = roster_path(follow_to_roster(start_login(client, conn)))
    assert client.get(callback).status_code == 303
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 1


def test_an_unreachable_idp_is_traced_once_per_interval_with_the_repeats_counted(
        db, tenant, hostile, sso_app, monkeypatch):
    """An IdP down (nothing listens on its port on 127.0.0.1): the refusals within the
    interval write one trace; the first refusal after it writes the next, which says how
    many went untraced and under which correlation id. Another connection's refusals have
    their own trace. A blocked address (past the limit with refusals it did cause) gets
    the refusal page for the outage, not 429."""
    down = f"http://127.0.0.1:{portpicker.pick_unused_port()}{DISCOVERY}"
    first = oidc_connection(db, tenant, hostile, oidc_discovery_url=down)
    second = oidc_connection(db, tenant, hostile, oidc_discovery_url=down)
    client = _limited(sso_app, db).test_client()
    client.environ_base.update(IP)
    for _ in range(3):  # the address's own failures: blocked
        _correlation(client.get(f"/sso/oidc/{new_id()}/login"))
    assert client.get(f"/sso/oidc/{new_id()}/login").status_code == 429
    start = len(_traces(db))
    ids = [_correlation(client.get(f"/sso/oidc/{first.id}/login")) for _ in range(3)]
    other = _correlation(client.get(f"/sso/oidc/{second.id}/login"))
    assert len(set(ids)) == 1
    assert other != ids[0]
    monkeypatch.setattr(fault_traces, "TRACE_INTERVAL_SECONDS", 0.0)  # the interval is over
    later = _correlation(client.get(f"/sso/oidc/{first.id}/login"))
    traces = _traces(db)[start:]
    assert [(t.id, t.reason, t.connection_id) for t in traces] == [
        (ids[0], "idp_unreachable", first.id), (other, "idp_unreachable", second.id),
        (later, "idp_unreachable", first.id)]
    payload = traces[2].payload if isinstance(traces[2].payload, dict) \
        else json.loads(traces[2].payload)
    assert payload["untraced_repeats"] == {"count": 2, "correlation_id": ids[0]}
    assert "untraced_repeats" not in (traces[0].payload if isinstance(traces[0].payload, dict)
                                      else json.loads(traces[0].payload))


@pytest.mark.parametrize("protocol", ["saml", "oidc"])
def test_a_disabled_connection_is_not_the_clients_failure(db, tenant, keys, hostile, sso_app,
                                                          protocol):
    """Logins through a connection an admin disabled (limit 3, five tries): each is refused
    as connection_disabled with one trace's correlation id, never 429, and the address's
    anonymous refusals are still traced afterwards."""
    conn = (saml_connection(db, tenant, [keys.idp.cert_b64]) if protocol == "saml"
            else oidc_connection(db, tenant, hostile))
    with db.transaction() as s:
        s.get(SsoConnection, conn.id).enabled = False
    client = _limited(sso_app, db).test_client()
    client.environ_base.update(IP)
    ids = [_correlation(client.get(f"/sso/{protocol}/{conn.id}/login")) for _ in range(5)]
    assert len(set(ids)) == 1
    assert [(t.id, t.reason) for t in _traces(db)] == [(ids[0], "connection_disabled")]
    _not_blocked(client, db)


@pytest.mark.parametrize(("status", "reason", "detail"), [
    (429, "idp_unreachable", "token endpoint: the IdP answered HTTP 429 (it is rate limiting "
                             "Roster)"),
    (400, "token_exchange_failed", "token endpoint: the IdP answered HTTP 400 without an "
                                   "OAuth error")])
def test_a_token_error_without_an_oauth_error_code_is_not_read_as_a_token(
        db, tenant, hostile, web, status, reason, detail):
    """The token endpoint answers 429 (rate limiting us, as Okta does: JSON without
    ``error``) or a 400 without an OAuth error: refused with that status in the detail,
    the 429 as the IdP's unavailability. Before: any JSON object was taken as the token
    response (RFC 6749 §5.1: that is a 200), and the login was refused as
    missing_id_token ("the token response has no id_token"), counted against the client."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    callback = roster_path(follow_to_roster(start_login(web, conn)))
    hostile.failing = {"/token": status}
    hostile.failing_body = {"errorCode": "E0000047",
                            "errorSummary": "API call exceeded rate limit due to too many "
                                            "requests."}
    resp = web.get(callback)
    _correlation(resp)
    traces = rows(db, "SELECT reason, detail FROM sso_login_traces")
    assert [t.reason for t in traces] == [reason]
    assert traces[0].detail == detail
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 0


def test_a_jit_login_the_directory_refuses_names_its_subject_and_is_not_counted(
        db, tenant, keys, sso_app):
    """A JIT login whose userName another person holds (the directory refuses the new user:
    provisioning_error) comes after the IdP vouched for the subject: each of four is traced
    naming that subject (masked), none is answered 429. Before: the trace had no subject
    (the admin could not tell whose login failed) and the refusal counted as the address's
    failed authentication, the fourth a 429 with no trace."""
    provision(db, tenant)
    with db.transaction() as s:  # the holder of alice@acme.com now has another email
        s.execute(text("UPDATE users SET primary_email = 'alice.old@acme.com'"))
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    client = _limited(sso_app, db).test_client()
    client.environ_base.update(IP)
    for _ in range(4):
        xml = forge.signed_response(claims_for(conn, in_response_to=start(client, conn)),
                                    keys.idp)
        _correlation(post_response(client, conn, forge.b64(xml)))
    traces = rows(db, "SELECT reason, subject FROM sso_login_traces")
    assert [(t.reason, t.subject) for t in traces] == [("provisioning_error", "a***@acme.com")] * 4


def test_an_idp_answering_temporarily_unavailable_is_not_the_clients_failure(
        db, tenant, hostile, sso_app):
    """The IdP sends the browser back with ``error=temporarily_unavailable`` (RFC 6749
    §4.1.2.1: it cannot handle the request now) five times (limit 3): each refused as
    idp_error under one trace, never 429, and the address is not blocked after. An
    ``access_denied`` still counts (the client writes the callback's query)."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    client = _limited(sso_app, db).test_client()
    client.environ_base.update(IP)
    hostile.response_params = {"error": "temporarily_unavailable"}
    ids = [_correlation(client.get(roster_path(follow_to_roster(start_login(client, conn)))))
           for _ in range(5)]
    assert len(set(ids)) == 1
    assert [(t.id, t.reason) for t in _traces(db)] == [(ids[0], "idp_error")]
    _not_blocked(client, db)
    hostile.response_params = {"error": "access_denied"}  # past the limit: _not_blocked
    resp = client.get(roster_path(follow_to_roster(start_login(client, conn))))
    assert resp.status_code == 429
