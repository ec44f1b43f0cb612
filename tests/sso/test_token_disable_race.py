"""A token exchange at Roster's OpenID Provider racing the disable of the connection the
login came through (PostgreSQL): no token row outlives the disable unrevoked.

The disable revokes the connection's login sessions and their tokens by UPDATEs, which
cannot see tokens an exchange inserted and has not committed yet; and the exchange read the
login without a lock on anything the disable takes. So an exchange that read the login live
and committed after the disable's token UPDATE stored tokens not marked revoked (refused on
use, since their login is revoked, but the disable's ``tokens_revoked`` was short). Now the
exchange holds the connection's row FOR KEY SHARE (app/sso/connection_sessions.py
hold_connection) from the check of its login to its commit, as a login does, and a disable
locks that row FOR UPDATE first: one waits for the other.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.models.sso import SsoConnection
from app.sso.connections import delete_connection, update_connection
from app.sso.provider_tokens import digest
from tests.api.conftest import make_key
from tests.conftest import OPERATOR, rows
from tests.lockwait import held, in_flight, started
from tests.sso.portal import BASIC, exchange, login_and_code


def _grant(db, tenant, keys, web, grant: str) -> tuple[str, dict[str, str], Any]:
    """A portal login up to the exchange under test: the login's connection id, the form
    of that exchange, and a hash of a row the exchange writes after it read its login."""
    _user, req, code = login_and_code(db, tenant, keys, web)
    [login] = rows(db, "SELECT connection_id FROM login_sessions")
    if grant == "code":
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": "https://portal.test/callback", "code_verifier": req.verifier}
        return login.connection_id, form, None
    tokens = exchange(web, code, req.verifier).get_json()
    return login.connection_id, {"grant_type": "refresh_token",
                                 "refresh_token": tokens["refresh_token"]}, tokens


def _post(sso_app, form: dict[str, str]):
    return sso_app.test_client().post("/sso/oidc/token", data=form,
                                      headers={"Authorization": BASIC})


def _unrevoked(db) -> int:
    return rows(db, "SELECT count(*) FROM issued_tokens WHERE revoked_at IS NULL")[0][0]


def _revoked_by_disable(db) -> int:
    [revoke] = rows(db, "SELECT data FROM audit_events WHERE action = 'session:revoke'")
    data = revoke.data if isinstance(revoke.data, dict) else json.loads(revoke.data)
    return int(data["tokens_revoked"])


@pytest.mark.parametrize("how", ["disable", "delete"])
@pytest.mark.parametrize("grant", ["code", "refresh"])
def test_an_exchange_during_an_open_disable_waits_and_is_refused(db, tenant, keys, web,
                                                                 sso_app, grant, how):
    """The disable (or delete) has ended the connection's logins and not committed when
    the portal redeems its code (or refresh token): the exchange waits for it, then is
    refused with invalid_grant, and no token row is left unrevoked; on both databases. Before
    (PostgreSQL): a code's exchange answered 200 with new token rows, not revoked, behind
    the disabled connection; a refresh waited for its token's row, found it revoked and
    audited a refresh-token replay, a false alarm."""
    conn_id, form, _tokens = _grant(db, tenant, keys, web, grant)

    def disable(s) -> None:
        conn = s.get(SsoConnection, conn_id)
        if how == "disable":
            update_connection(s, conn, OPERATOR, {"enabled": False})
        else:
            delete_connection(s, conn, OPERATOR)

    with in_flight(db, disable):
        exchanging, outcome = started(db, lambda: _post(sso_app, form))
        waited = exchanging.is_alive()
    exchanging.join(30)
    response = outcome["result"]
    assert not isinstance(response, BaseException), response
    if db.dialect == "postgresql":
        assert waited, "the exchange did not wait for the disable in flight"
    assert response.status_code == 400, response.text
    assert response.get_json()["error"] == "invalid_grant"
    assert _unrevoked(db) == 0, "a token row outlived the disable unrevoked"
    # Refused for the disable, not for a replay: the refresh token was not used twice.
    assert rows(db, "SELECT count(*) FROM audit_events WHERE action = 'sso:token:replay'"
                )[0][0] == 0


@pytest.mark.parametrize("grant", ["code", "refresh"])
def test_a_disable_during_an_exchange_waits_and_revokes_its_tokens(db, tenant, keys, web,
                                                                   sso_app, dialect, grant):
    """The exchange has checked its login and waits before its commit (a row it writes is
    held here: the organization its new tokens name, or the refresh token it rotates) when
    the admin disables the connection through the API. Both succeed, and the disable
    revokes the exchange's new tokens too, counted in session:revoke's tokens_revoked.
    Before: the disable's revocation could not see them; they stayed unrevoked and the
    count was short."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: an exchange and a disable never "
                    "overlap")
    conn_id, form, tokens = _grant(db, tenant, keys, web, grant)
    admin = make_key(db, "admin", tenant.org)
    if grant == "code":
        hold = ("SELECT id FROM organizations WHERE id = :k FOR UPDATE", tenant.org.id)
    else:
        hold = ("SELECT id FROM issued_tokens WHERE token_hash = :k FOR UPDATE",
                digest(tokens["refresh_token"]))

    def disable() -> Any:
        return sso_app.test_client().post(
            f"/api/v1/orgs/{tenant.org.id}/connections/{conn_id}/disable",
            headers=admin.headers)

    with held(db, hold[0], k=hold[1]):
        exchanging, exchanged = started(db, lambda: _post(sso_app, form))
        disabling, disabled = started(db, disable, waiters=2)
    exchanging.join(30)
    disabling.join(30)
    assert not isinstance(exchanged.get("result"), BaseException), exchanged
    assert not isinstance(disabled.get("result"), BaseException), disabled
    assert exchanged["result"].status_code == 200, exchanged["result"].text
    assert disabled["result"].status_code == 200, disabled["result"].text
    assert _unrevoked(db) == 0, "a token row outlived the disable unrevoked"
    # code: the new access and refresh tokens; refresh: the first access token and the
    # new pair (the exchange itself revoked the refresh token it rotated).
    assert _revoked_by_disable(db) == (2 if grant == "code" else 3)
