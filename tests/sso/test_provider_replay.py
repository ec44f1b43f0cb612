"""The OpenID Provider refuses a reused authorization code (RFC 6749 §4.1.2) and a replayed
refresh token (RFC 9700 §4.14.2), and revokes the tokens of that grant either way."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select, update

from app.db import utcnow
from app.models.sso import IssuedToken
from app.sso.provider_tokens import REFRESH, digest
from tests.conftest import rows
from tests.lockwait import wait_for_a_row_lock_wait
from tests.sso.portal import BASIC, AuthRequest, code_from, exchange, introspect, login_and_code


def _refresh(web, refresh_token: str):
    return web.post("/sso/oidc/token", data={"grant_type": "refresh_token",
                                             "refresh_token": refresh_token},
                    headers={"Authorization": BASIC})


def _replays(db) -> list[dict]:
    found = rows(db, "SELECT subject_id, data FROM audit_events "
                     "WHERE action = 'sso:token:replay'")
    return [{"subject": r.subject_id,
             **(r.data if isinstance(r.data, dict) else json.loads(r.data))} for r in found]


def _dead(web, *tokens: str) -> bool:
    return all(introspect(web, t) == {"active": False} for t in tokens)


def test_a_reused_code_is_refused_and_revokes_the_tokens_it_gave(db, tenant, keys, web):
    """The second exchange is invalid_grant, and the access and refresh tokens of the first
    are revoked (RFC 6749 §4.1.2 SHOULD): whoever redeemed it first may be the attacker.
    The used code stays stored, marked, until it expires. The old code deleted the row, so
    the second use looked unknown and the first tokens stayed active."""
    user, req, code = login_and_code(db, tenant, keys, web)
    first = exchange(web, code, req.verifier).get_json()
    assert introspect(web, first["access_token"])["active"] is True
    again = exchange(web, code, req.verifier)
    assert again.status_code == 400
    assert again.get_json()["error"] == "invalid_grant"
    assert "access_token" not in again.get_json()
    assert _dead(web, first["access_token"], first["refresh_token"])
    assert _refresh(web, first["refresh_token"]).get_json()["error"] == "invalid_grant"
    [stored] = rows(db, "SELECT used_at FROM oauth_authorization_codes")
    assert stored.used_at is not None
    [replay] = _replays(db)
    assert (replay["subject"], replay["grant_type"], replay["client_id"],
            replay["tokens_revoked"]) == (user.id, "authorization_code", "portal", 2)


def test_a_reused_code_also_revokes_the_tokens_refreshed_from_it(db, tenant, keys, web):
    """The family follows the grant through rotation: tokens refreshed from the code's
    refresh token die with it on reuse."""
    _user, req, code = login_and_code(db, tenant, keys, web)
    first = exchange(web, code, req.verifier).get_json()
    second = _refresh(web, first["refresh_token"]).get_json()
    assert introspect(web, second["access_token"])["active"] is True
    assert exchange(web, code, req.verifier).get_json()["error"] == "invalid_grant"
    assert _dead(web, second["access_token"], second["refresh_token"])


def test_a_replayed_refresh_token_revokes_the_whole_family(db, tenant, keys, web):
    """RFC 9700 §4.14.2: presenting a rotated refresh token again is invalid_grant and
    revokes the current refresh token and the access tokens of that grant, so a thief and
    the portal both have to sign in again. The old code only answered invalid_grant."""
    user, req, code = login_and_code(db, tenant, keys, web)
    first = exchange(web, code, req.verifier).get_json()
    second = _refresh(web, first["refresh_token"]).get_json()
    assert introspect(web, second["refresh_token"])["active"] is True
    replayed = _refresh(web, first["refresh_token"])
    assert replayed.status_code == 400
    assert replayed.get_json()["error"] == "invalid_grant"
    assert _dead(web, first["access_token"], second["access_token"], second["refresh_token"])
    assert _refresh(web, second["refresh_token"]).get_json()["error"] == "invalid_grant"
    [replay] = _replays(db)
    assert (replay["subject"], replay["grant_type"]) == (user.id, "refresh_token")
    assert replay["tokens_revoked"] == 3  # first access, second access, second refresh
    rotated = rows(db, "SELECT rotated_at FROM issued_tokens WHERE rotated_at IS NOT NULL")
    assert len(rotated) == 1


def test_a_replay_leaves_another_grant_of_the_same_login_alone(db, tenant, keys, web):
    """Only the replayed grant's family is revoked: the portal's other authorization on
    the same browser login (another tab) keeps working, and so does the login itself."""
    _user, req, code = login_and_code(db, tenant, keys, web)
    first = exchange(web, code, req.verifier).get_json()
    other_req = AuthRequest.new()  # still signed in at Roster: straight to a code
    back = web.get(other_req.url().replace("http://roster.test", ""))
    other = exchange(web, code_from(back.headers["Location"], other_req.state),
                     other_req.verifier).get_json()
    _refresh(web, first["refresh_token"])
    assert _refresh(web, first["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert introspect(web, other["access_token"])["active"] is True
    assert _refresh(web, other["refresh_token"]).status_code == 200
    assert rows(db, "SELECT revoked_at FROM login_sessions")[0].revoked_at is None


def test_a_revoked_refresh_token_is_refused_without_a_replay_alarm(db, tenant, keys, web):
    """A refresh token the portal revoked itself (RFC 7009) is just invalid_grant: it was
    never rotated, so nothing is reported as a replay."""
    _user, req, code = login_and_code(db, tenant, keys, web)
    tokens = exchange(web, code, req.verifier).get_json()
    assert web.post("/sso/oidc/revoke", data={"token": tokens["refresh_token"]},
                    headers={"Authorization": BASIC}).status_code == 200
    assert _refresh(web, tokens["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert _replays(db) == []


def test_revoking_a_refresh_token_leaves_another_grant_of_the_same_login_alone(
        db, tenant, keys, web):
    """RFC 7009 §2.1: revoking a refresh token drops the access tokens of the same
    authorization grant (its family, refreshed ones included), not the portal's other
    grant on the same browser login (another tab). The old code revoked every token of the
    client on the login session."""
    _user, req, code = login_and_code(db, tenant, keys, web)
    first = exchange(web, code, req.verifier).get_json()
    second = _refresh(web, first["refresh_token"]).get_json()
    other_req = AuthRequest.new()  # still signed in at Roster: straight to a code
    back = web.get(other_req.url().replace("http://roster.test", ""))
    other = exchange(web, code_from(back.headers["Location"], other_req.state),
                     other_req.verifier).get_json()
    assert web.post("/sso/oidc/revoke", data={"token": second["refresh_token"],
                                              "token_type_hint": "refresh_token"},
                    headers={"Authorization": BASIC}).status_code == 200
    assert _dead(web, first["access_token"], second["access_token"], second["refresh_token"])
    assert introspect(web, other["access_token"])["active"] is True
    assert _refresh(web, other["refresh_token"]).status_code == 200
    assert _replays(db) == []


def test_a_reused_code_also_revokes_what_a_refresh_in_flight_adds(db, tenant, keys, web,
                                                                  sso_app, dialect):
    """PostgreSQL, READ COMMITTED: a refresh of the family is in flight (its new tokens
    written, the refresh token it rotates locked) when the code comes back. The revocation
    waited for that lock, but its snapshot predated the new tokens, which stayed live."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: no refresh can be in flight")
    _user, req, code = login_and_code(db, tenant, keys, web)
    first = exchange(web, code, req.verifier).get_json()
    with db.transaction() as refresh:  # what a refresh of first's token does, uncommitted
        current = refresh.scalars(select(IssuedToken).where(
            IssuedToken.token_hash == digest(first["refresh_token"]))).one()
        added = IssuedToken(token_type=REFRESH, token_hash=digest("in-flight"),
                            organization_id=current.organization_id, user_id=current.user_id,
                            session_id=current.session_id, client_id=current.client_id,
                            scope=current.scope, issued_at=utcnow(),
                            expires_at=utcnow() + timedelta(hours=1),
                            family_id=current.family_id)
        refresh.add(added)
        refresh.flush()
        refresh.execute(update(IssuedToken).where(IssuedToken.id == current.id)
                        .values(revoked_at=utcnow(), rotated_at=utcnow()))
        outcome: dict[str, object] = {}
        reuse = threading.Thread(target=lambda: outcome.update(
            response=exchange(sso_app.test_client(), code, req.verifier)))
        reuse.start()
        wait_for_a_row_lock_wait(db)
    reuse.join(30)
    assert outcome["response"].get_json()["error"] == "invalid_grant"
    [(revoked_at,)] = rows(db, "SELECT revoked_at FROM issued_tokens WHERE token_hash = :h",
                           h=digest("in-flight"))
    assert revoked_at is not None


def test_an_authorization_request_reusing_a_nonce_is_refused(db, tenant, keys, web):
    """OIDC Core §15.5.2: replay is for the portal to detect with the nonce, and a provider
    may refuse a nonce it saw: Roster refuses one it issued a code for (authlib's
    exists_nonce, over the stored codes) with invalid_request at the portal's redirect URI,
    no code. The same nonce from another request of the portal while the first code is
    stored is a replayed request (a captured authorize URL, a reload), not a new login."""
    _user, first, code = login_and_code(db, tenant, keys, web)
    again = AuthRequest.new()
    again.nonce = first.nonce
    back = web.get(again.url().replace("http://roster.test", ""))
    assert back.status_code == 302, back.text
    query = parse_qs(urlsplit(back.headers["Location"]).query)
    assert query["error"] == ["invalid_request"], query
    assert query["state"] == [again.state]
    assert "code" not in query
    # The first code still works, and a fresh nonce gets a code.
    assert exchange(web, code, first.verifier).status_code == 200
    fresh = AuthRequest.new()
    answer = web.get(fresh.url().replace("http://roster.test", ""))
    assert code_from(answer.headers["Location"], fresh.state)
