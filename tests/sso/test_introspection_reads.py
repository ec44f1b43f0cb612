"""Introspection (RFC 7662) and UserInfo are reads: a token found dead (its login session
expired, its connection disabled, its own lifetime over) is answered ``active: false`` every
time, nothing is written for it, and neither endpoint waits for, or holds up, a writer."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.api.conftest import make_key
from tests.conftest import rows
from tests.lockwait import in_flight, started
from tests.sso.portal import BASIC, exchange, introspect, login_and_code


def _tokens(db, tenant, keys, web) -> dict:
    _user, req, code = login_and_code(db, tenant, keys, web)
    tokens = exchange(web, code, req.verifier).get_json()
    assert introspect(web, tokens["access_token"])["active"] is True
    return tokens


def _stored(db) -> list:
    return [tuple(r) for r in rows(db, "SELECT id, revoked_at, rotated_at, expires_at "
                                       "FROM issued_tokens ORDER BY id")]


def _end(db, web, tenant, how: str) -> None:
    if how == "connection_disabled":
        admin = make_key(db, "admin", tenant.org)
        [conn] = rows(db, "SELECT id FROM sso_connections")
        resp = web.post(f"/api/v1/orgs/{tenant.org.id}/connections/{conn.id}/disable",
                        headers=admin.headers)
        assert resp.status_code == 200, resp.text
        return
    statement = {"session_expired": "UPDATE login_sessions SET expires_at = created_at",
                 "token_expired": "UPDATE issued_tokens SET expires_at = issued_at"}[how]
    with db.engine.begin() as c:
        c.exec_driver_sql(statement)


@pytest.mark.parametrize("how", ["session_expired", "connection_disabled", "token_expired"])
def test_a_dead_token_is_inactive_at_every_introspection_and_nothing_is_written(
        db, tenant, keys, web, how):
    """Introspected twice, both tokens answer {"active": false}; userinfo refuses the access
    token (401) and the token endpoint the refresh token (invalid_grant), after the
    introspections as before them; the token rows are as the end left them. Before: an
    introspection of a token of an expired login session marked its row revoked (a write
    on a read endpoint)."""
    tokens = _tokens(db, tenant, keys, web)
    _end(db, web, tenant, how)
    before = _stored(db)
    for _ in range(2):
        for token in (tokens["access_token"], tokens["refresh_token"]):
            assert introspect(web, token) == {"active": False}
    assert _stored(db) == before
    userinfo = web.get("/sso/oidc/userinfo",
                       headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert userinfo.status_code == 401
    refreshed = web.post("/sso/oidc/token", data={"grant_type": "refresh_token",
                                                  "refresh_token": tokens["refresh_token"]},
                         headers={"Authorization": BASIC})
    assert refreshed.get_json()["error"] == "invalid_grant"
    assert introspect(web, tokens["access_token"]) == {"active": False}


@pytest.mark.parametrize("dead", [True, False])
def test_introspection_answers_beside_a_writer_in_flight(db, tenant, keys, web, dead):
    """A transaction holding the token rows (PostgreSQL: row locks; SQLite: the write
    lock) has not committed: the introspection answers at once, active false for a token
    of an expired login session, true for a live one. Before: on SQLite it waited for the
    write lock (and answered 503 after the busy timeout), on PostgreSQL for the dead
    token's row lock, to mark it revoked."""
    tokens = _tokens(db, tenant, keys, web)
    if dead:
        _end(db, web, tenant, "session_expired")
    with in_flight(db, lambda s: s.execute(sa.text("UPDATE issued_tokens SET scope = scope"))):
        thread, outcome = started(db, lambda: introspect(web, tokens["access_token"]))
        thread.join(2)
        assert not thread.is_alive(), "the introspection waited for the writer"
    answer = outcome["result"]
    assert isinstance(answer, dict), answer
    assert answer["active"] is (not dead)


def test_userinfo_answers_beside_a_writer_in_flight(db, tenant, keys, web):
    """UserInfo (OIDC Core §5.3) reads only: with a write transaction in flight it answers
    at once with the user's claims. Before: it opened a write transaction, so on SQLite it
    waited for the single write lock (and answered 503 after the busy timeout)."""
    tokens = _tokens(db, tenant, keys, web)
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    with in_flight(db, lambda s: s.execute(sa.text("UPDATE issued_tokens SET scope = scope"))):
        thread, outcome = started(db, lambda: web.get("/sso/oidc/userinfo", headers=bearer))
        thread.join(2)
        assert not thread.is_alive(), "userinfo waited for the writer"
    answer = outcome["result"]
    assert answer.status_code == 200, answer.text
    assert answer.get_json()["sub"]
