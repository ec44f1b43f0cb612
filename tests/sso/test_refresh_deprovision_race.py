"""A refresh-token exchange racing its user's deprovisioning (PostgreSQL): no token outlives
the leaver.

A deprovisioning revokes the user's tokens by one UPDATE, which cannot see tokens a refresh
inserted and has not committed yet. A refresh that read the user active, rotated its token
and committed after that UPDATE began left its new access and refresh tokens live for a
deprovisioned user. The token endpoint now holds the user's row FOR SHARE from its status
check to its commit (app/directory/hold.py), and every deprovisioning holds it first.
"""

from __future__ import annotations

import pytest

from app.lifecycle import Trigger, deprovision_user
from app.models import User
from app.sso.provider_tokens import digest
from tests.conftest import OPERATOR, rows
from tests.lockwait import held, started
from tests.sso.portal import BASIC, exchange, login_and_code


def test_a_refresh_committing_after_a_deprovisioning_leaves_no_live_token(
        db, tenant, keys, web, sso_app, dialect):
    """The refresh has read its user and written its new tokens, and waits to rotate its
    refresh token (locked here); the user is deprovisioned meanwhile. Both commit: no token
    of the user is left live (before: the refresh's new tokens, which the deprovisioning's
    revocation could not see)."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: a refresh and a deprovisioning never "
                    "overlap")
    user, req, code = login_and_code(db, tenant, keys, web)
    tokens = exchange(web, code, req.verifier).get_json()

    def refresh():
        return sso_app.test_client().post(
            "/sso/oidc/token", headers={"Authorization": BASIC},
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})

    def deprovision():
        with db.transaction() as s:
            return deprovision_user(s, s.get(User, user.id), OPERATOR,
                                    trigger=Trigger.operator)

    with held(db, "SELECT id FROM issued_tokens WHERE token_hash = :h FOR UPDATE",
              h=digest(tokens["refresh_token"])):
        refreshing, refreshed = started(db, refresh)  # at the rotation of its token
        out, taken_out = started(db, deprovision, waiters=2)
    refreshing.join(30)
    out.join(30)
    assert not isinstance(taken_out.get("result"), BaseException), taken_out
    assert not isinstance(refreshed.get("result"), BaseException), refreshed
    assert refreshed["result"].status_code in (200, 400), refreshed["result"].text
    assert rows(db, "SELECT status FROM users WHERE id = :u", u=user.id)[0][0] == \
        "deprovisioned"
    live = rows(db, "SELECT token_type FROM issued_tokens WHERE user_id = :u AND "
                    "revoked_at IS NULL AND expires_at > CURRENT_TIMESTAMP", u=user.id)
    assert live == [], "a deprovisioned user kept a live token"


def test_a_refresh_during_an_open_deprovisioning_waits_and_is_refused(
        db, tenant, keys, web, sso_app, dialect):
    """A deprovisioning has revoked the user's tokens and not committed yet when the portal
    refreshes: the exchange waits for it, then is refused, and issues nothing. No replay is
    alleged (before: the exchange ran on, found its token revoked at the rotation, and
    audited a refresh-token replay, a false alarm for the security team)."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time")
    user, req, code = login_and_code(db, tenant, keys, web)
    tokens = exchange(web, code, req.verifier).get_json()
    with db.transaction() as s:
        deprovision_user(s, s.get(User, user.id), OPERATOR, trigger=Trigger.operator)
        s.flush()
        refreshing, refreshed = started(db, lambda: sso_app.test_client().post(
            "/sso/oidc/token", headers={"Authorization": BASIC},
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}))
        waited = refreshing.is_alive()
    refreshing.join(30)
    response = refreshed["result"]
    assert not isinstance(response, BaseException), response
    assert waited, "the refresh did not wait for the deprovisioning in flight"
    assert response.status_code == 400, response.text
    assert response.get_json()["error"] == "invalid_grant"
    assert rows(db, "SELECT count(*) FROM issued_tokens WHERE user_id = :u AND "
                    "revoked_at IS NULL", u=user.id)[0][0] == 0
    assert rows(db, "SELECT count(*) FROM audit_events WHERE action = 'sso:token:replay'"
                )[0][0] == 0
