"""A customer's OIDC IdP that is down or failing is not asked again by every login.

Before, a failed read of the discovery document or JWKS was not remembered: through an IdP
outage each login attempt went to the IdP again and could wait the whole deadline (10 s)
on a request thread, and employees retrying took every worker. Now the failure is
remembered per URL for a short time growing with each consecutive failure (reset by a good
read), the logins meanwhile refused at once with the same page and reason; an expired
document keeps serving while its re-read fails (within a bound); a JWKS re-read forced by
an unknown key id happens at most once per interval (app/sso/idp_cache.py).

Time is the cache's injected clock (tests only move it forward); the IdP is the loopback
one of tests/sso/oidc_idp.py, answering 503 or holding its answer back."""

from __future__ import annotations

import json
import re
import threading

import portpicker
import pytest
from joserfc.jwk import RSAKey

from app.sso import fault_traces, idp_cache
from app.sso.oidc_rp import ProviderCache
from tests.conftest import rows
from tests.sso.conftest import provision
from tests.sso.oidc_idp import (
    PORTAL,
    follow_to_roster,
    oidc_connection,
    roster_path,
    start_login,
)

DISCOVERY = "/.well-known/openid-configuration"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(sso_app) -> Clock:
    """The SSO app's IdP document cache, empty, on a clock of the test's."""
    moved = Clock()
    sso_app.extensions["roster.oidc_providers"] = ProviderCache(clock=moved, private_ok=True)
    return moved


@pytest.fixture
def asked(hostile) -> list[str]:
    """The paths the IdP was asked for, in order."""
    paths: list[str] = []
    hostile.on_request = paths.append
    return paths


@pytest.fixture
def every_refusal_traced(monkeypatch):
    """Each refusal writes its trace (no per-interval bound): its reason can be read."""
    monkeypatch.setattr(fault_traces, "TRACE_INTERVAL_SECONDS", 0.0)


def _refused(resp) -> str:
    assert resp.status_code == 403, (resp.status_code, resp.text)
    found = re.search(r"id=correlation-id>([^<]+)<", resp.text)
    assert found, resp.text
    return found.group(1)


def _trace(db, correlation_id: str):
    found = rows(db, "SELECT reason, detail FROM sso_login_traces WHERE id = :id",
                 id=correlation_id)
    assert len(found) == 1, correlation_id
    return found[0]


def test_a_failed_discovery_is_remembered_with_a_growing_backoff(
        db, tenant, hostile, web, clock, asked, every_refusal_traced):
    """The discovery document answers 503: the first login asks the IdP and is refused
    (idp_unreachable); the next ones, within 2 s, are refused the same way without asking;
    after 2 s the IdP is asked again, then not for 4 s, and once it answers the login goes
    on. Before: every login asked the IdP (and waited for it)."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    hostile.failing = {DISCOVERY: 503}
    first = _trace(db, _refused(web.get(f"/sso/oidc/{conn.id}/login")))
    assert first.reason == "idp_unreachable"
    assert asked.count(DISCOVERY) == 1
    for _ in range(3):
        again = _trace(db, _refused(web.get(f"/sso/oidc/{conn.id}/login")))
        assert again.reason == "idp_unreachable"
        assert again.detail.startswith(first.detail + " (remembered: the IdP is asked again")
    assert asked.count(DISCOVERY) == 1
    clock.advance(2.1)
    _refused(web.get(f"/sso/oidc/{conn.id}/login"))
    assert asked.count(DISCOVERY) == 2
    clock.advance(2.1)  # the second failure is remembered 4 s
    _refused(web.get(f"/sso/oidc/{conn.id}/login"))
    assert asked.count(DISCOVERY) == 2
    clock.advance(2.1)
    hostile.failing = {}
    assert web.get(f"/sso/oidc/{conn.id}/login").status_code == 303
    assert asked.count(DISCOVERY) == 3
    assert web.get(f"/sso/oidc/{conn.id}/login").status_code == 303  # cached
    assert asked.count(DISCOVERY) == 3


def test_an_expired_discovery_document_serves_while_the_idp_fails_within_a_bound(
        db, tenant, hostile, web, clock, asked):
    """The document, read once, expires (an hour) while the discovery endpoint answers
    503: logins go on with it, the IdP asked once per backoff (reset by the good read: 2 s
    again); past the stale-if-error bound the login is refused (idp_unreachable)."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    assert web.get(f"/sso/oidc/{conn.id}/login").status_code == 303
    hostile.failing = {DISCOVERY: 503}
    clock.advance(3600.5)
    for _ in range(3):
        assert web.get(f"/sso/oidc/{conn.id}/login").status_code == 303
    assert asked.count(DISCOVERY) == 2
    callback = roster_path(follow_to_roster(start_login(web, conn)))
    resp = web.get(callback)  # the whole login completes on the stale document
    assert resp.status_code == 303, resp.text
    assert resp.headers["Location"] == PORTAL + "home"
    clock.advance(2.1)
    assert web.get(f"/sso/oidc/{conn.id}/login").status_code == 303
    assert asked.count(DISCOVERY) == 3
    clock.advance(idp_cache.STALE_IF_ERROR_SECONDS)
    correlation = _refused(web.get(f"/sso/oidc/{conn.id}/login"))
    assert _trace(db, correlation).reason == "idp_unreachable"


def test_a_failed_jwks_is_remembered(db, tenant, hostile, web, clock, asked):
    """The JWKS answers 503: the first callback reads it and is refused (idp_unreachable);
    the next one is refused without asking the IdP; after the backoff it is read again and
    the login succeeds."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    hostile.failing = {"/jwks": 503}
    ids = [_refused(web.get(roster_path(follow_to_roster(start_login(web, conn)))))
           for _ in range(2)]
    assert _trace(db, ids[0]).reason == "idp_unreachable"
    assert asked.count("/jwks") == 1
    hostile.failing = {}
    clock.advance(2.1)
    resp = web.get(roster_path(follow_to_roster(start_login(web, conn))))
    assert resp.status_code == 303, resp.text
    assert asked.count("/jwks") == 2


def test_an_unknown_key_id_forces_at_most_one_jwks_read_per_interval(
        db, tenant, hostile, web, clock, asked):
    """ID tokens naming a kid the JWKS lacks: the first callback reads the JWKS and re-reads
    it once (unknown_signing_key); the next ones within the interval do not re-read it;
    after the interval a rotated key is found by one re-read, and the login succeeds.
    Before: each such token made Roster read the IdP's JWKS again."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    rogue = RSAKey.generate_key(2048, parameters={"kid": "never-published"})
    hostile.token_for = lambda claims: hostile.sign(claims, key=rogue)
    for _ in range(3):
        resp = web.get(roster_path(follow_to_roster(start_login(web, conn))))
        correlation = _refused(resp)
        assert _trace(db, correlation).reason == "unknown_signing_key"
    assert asked.count("/jwks") == 2
    clock.advance(idp_cache.FORCED_REFRESH_INTERVAL_SECONDS + 0.1)
    rotated = RSAKey.generate_key(2048, parameters={"kid": "rotated-1"})
    hostile.published = [rotated]
    hostile.token_for = lambda claims: hostile.sign(claims, key=rotated)
    resp = web.get(roster_path(follow_to_roster(start_login(web, conn))))
    assert resp.status_code == 303, resp.text
    assert asked.count("/jwks") == 3


def test_logins_during_a_read_of_a_failing_idp_do_not_wait_for_it(
        db, tenant, hostile, sso_app, clock, asked, every_refusal_traced):
    """A failure remembered, its backoff over: one login asks the IdP again, and while
    the IdP holds that answer back another login is refused at once (the failure still
    remembered) instead of asking too or waiting for it. The held read then completes."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    hostile.failing = {DISCOVERY: 503}
    first = sso_app.test_client()
    _refused(first.get(f"/sso/oidc/{conn.id}/login"))
    clock.advance(2.1)
    held, release = threading.Event(), threading.Event()

    def hold(path: str) -> None:
        asked.append(path)
        if path == DISCOVERY:
            held.set()
            release.wait(30)
    hostile.on_request = hold
    hostile.failing = {}
    answers: list[int] = []
    probe = threading.Thread(target=lambda: answers.append(
        sso_app.test_client().get(f"/sso/oidc/{conn.id}/login").status_code))
    probe.start()
    try:
        assert held.wait(30)
        correlation = _refused(sso_app.test_client().get(f"/sso/oidc/{conn.id}/login"))
        assert probe.is_alive()  # refused while the read was still held at the IdP
    finally:
        release.set()
        probe.join(30)
    assert _trace(db, correlation).reason == "idp_unreachable"
    assert asked.count(DISCOVERY) == 2
    assert answers == [303]


def test_a_failing_idp_does_not_affect_connections_of_other_urls(
        db, tenant, hostile, web, clock, asked):
    """Two connections: one whose IdP is down (nothing listens), one whose IdP answers.
    The failure remembered for the first URL refuses only the first connection's logins."""
    provision(db, tenant)
    down_url = f"http://127.0.0.1:{portpicker.pick_unused_port()}{DISCOVERY}"
    down = oidc_connection(db, tenant, hostile, oidc_discovery_url=down_url)
    up = oidc_connection(db, tenant, hostile)
    for _ in range(2):
        _refused(web.get(f"/sso/oidc/{down.id}/login"))
        assert web.get(f"/sso/oidc/{up.id}/login").status_code == 303
    traces = rows(db, "SELECT reason, connection_id, payload FROM sso_login_traces")
    assert [(t.reason, t.connection_id) for t in traces] == [("idp_unreachable", down.id)]
    payload = traces[0].payload if isinstance(traces[0].payload, dict) \
        else json.loads(traces[0].payload)
    assert "untraced_repeats" not in payload


def test_the_cache_bounds_are_settings(db, tenant, hostile, sso_app, asked):
    """``sso.idp_failure_backoff_seconds`` / ``_max_seconds`` bound how long a failed read
    is remembered, ``sso.idp_stale_if_error_seconds`` how long an expired document serves
    while its re-read fails (0: not at all): the app's cache is built from them."""
    settings = sso_app.config["ROSTER"]["sso"]
    clock = Clock()
    changed = {**settings, "idp_failure_backoff_seconds": 10,
               "idp_failure_backoff_max_seconds": 15, "idp_stale_if_error_seconds": 0}
    sso_app.extensions["roster.oidc_providers"] = ProviderCache.from_settings(changed,
                                                                              clock=clock)
    web = sso_app.test_client()
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    login = f"/sso/oidc/{conn.id}/login"
    assert web.get(login).status_code == 303
    hostile.failing = {DISCOVERY: 503}
    clock.advance(3600.5)  # expired: no stale-if-error, the failed re-read refuses
    _refused(web.get(login))
    assert asked.count(DISCOVERY) == 2
    clock.advance(9)  # within the first backoff (10 s; the default was 2 s)
    _refused(web.get(login))
    assert asked.count(DISCOVERY) == 2
    clock.advance(1.1)
    _refused(web.get(login))
    assert asked.count(DISCOVERY) == 3
    clock.advance(15.1)  # the second backoff, 20 s, is capped at 15
    _refused(web.get(login))
    assert asked.count(DISCOVERY) == 4


def test_the_app_builds_its_cache_from_the_settings(sso_app):
    """The cache the app's logins use carries the ``[sso]`` idp_* settings."""
    from app.sso.idp_cache import CachePolicy
    from app.sso.web import provider_cache

    sso_app.extensions.pop("roster.oidc_providers", None)
    sso = {**sso_app.config["ROSTER"]["sso"]}
    try:
        sso_app.config["ROSTER"]["sso"] = {**sso, "idp_stale_if_error_seconds": 7}
        with sso_app.app_context():
            cache = provider_cache()
        assert cache.policy == CachePolicy(stale_if_error_seconds=7)
    finally:
        sso_app.config["ROSTER"]["sso"] = sso
        sso_app.extensions.pop("roster.oidc_providers", None)
