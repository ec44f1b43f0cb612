"""An SSO login racing an admin who disables (or deletes) its connection: no login outlives
the connection's end.

Ending a connection revokes its live login sessions by one UPDATE, which cannot see a
session a login inserted and has not committed yet; and the login read the connection
without a lock. So a login (SAML ACS, OIDC callback) that read the connection enabled and
committed after the disable's revocation left a live session behind a disabled connection
(PostgreSQL). Now the login holds the connection's row FOR SHARE from its first read to its
commit and refuses when it is disabled or gone, and the disable or delete locks the row
before it revokes: one waits for the other. SQLite has one writer: the login waits for the
write lock and reads the outcome, the same outcome.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.audit.log import chain_for
from app.models.sso import SsoConnection
from app.sso.connection_metadata import apply_idp_metadata
from app.sso.connections import delete_connection, update_connection
from tests.api.conftest import make_key
from tests.conftest import OPERATOR, rows
from tests.lockwait import held, in_flight, started
from tests.sso import forge
from tests.sso.conftest import claims_for, post_response, provision, saml_connection, start
from tests.sso.oidc_idp import follow_to_roster, oidc_connection, roster_path, start_login


def _login(db, tenant, keys, hostile, web, protocol: str) -> tuple[SsoConnection, Any]:
    """A connection and its login, prepared up to the request that finishes it (the ACS
    POST, the OIDC callback): a function making that request."""
    provision(db, tenant)
    if protocol == "saml":
        conn = saml_connection(db, tenant, [keys.idp.cert_b64])
        xml = forge.signed_response(claims_for(conn, in_response_to=start(web, conn)),
                                    keys.idp)
        return conn, lambda: post_response(web, conn, forge.b64(xml))
    conn = oidc_connection(db, tenant, hostile)
    location = follow_to_roster(start_login(web, conn))
    return conn, lambda: web.get(roster_path(location))


def _live(db, conn: SsoConnection) -> int:
    return rows(db, "SELECT count(*) AS n FROM login_sessions WHERE connection_id = :c "
                    "AND revoked_at IS NULL", c=conn.id)[0].n


def _end(session, conn_id: str, how: str) -> None:
    conn = session.get(SsoConnection, conn_id)
    if how == "disable":
        update_connection(session, conn, OPERATOR, {"enabled": False})
    else:
        delete_connection(session, conn, OPERATOR)


@pytest.mark.parametrize("how", ["disable", "delete"])
@pytest.mark.parametrize("protocol", ["saml", "oidc"])
def test_a_login_during_an_open_disable_waits_and_is_refused(db, tenant, keys, hostile, web,
                                                             protocol, how):
    """The disable (or delete) has ended the connection's logins and not committed when
    the login's last request comes: the login waits for it, then is refused with the
    sign-in failure page (403, traced), and no session is left; on both databases. Before
    (PostgreSQL): 303, and its session lived on behind the disabled connection; a delete
    in flight made the refusal's trace a 500 (its connection was gone)."""
    conn, finish = _login(db, tenant, keys, hostile, web, protocol)
    with in_flight(db, lambda s: _end(s, conn.id, how)):
        login, outcome = started(db, finish)
    login.join(30)
    response = outcome["result"]
    assert not isinstance(response, BaseException), response
    assert response.status_code == 403, response.text
    assert _live(db, conn) == 0, "a login outlived its connection's end"
    traces = rows(db, "SELECT id, connection_id, organization_id, reason "
                      "FROM sso_login_traces")
    assert len(traces) == 1
    # A disabled connection is named, a deleted one never (its row is gone); both traces
    # are in the organization, where an operator lists them. Before, the ACS's trace of a
    # delete had no organization (the OIDC callback's had): no listing found it.
    named = how == "disable"
    assert traces[0].connection_id == (conn.id if named else None)
    assert (traces[0].organization_id, traces[0].reason) == (
        tenant.org.id, "connection_disabled" if named else "unknown_connection")
    auditor = make_key(db, "auditor", tenant.org)
    listed = web.get(f"/api/v1/orgs/{tenant.org.id}/sso/traces", headers=auditor.headers)
    assert listed.status_code == 200, listed.text
    assert [t["id"] for t in listed.get_json()["items"]] == [traces[0].id]


@pytest.mark.parametrize("how", ["disable", "delete"])
@pytest.mark.parametrize("protocol", ["saml", "oidc"])
def test_a_login_committing_after_a_disable_began_leaves_no_live_session(
        app, db, tenant, keys, hostile, web, dialect, protocol, how):
    """The login has read its connection and opened its session, and waits at its commit
    (the audit chain head, held here); the admin disables (or deletes) the connection
    through the API meanwhile. Both succeed, and the login's session is ended with the
    connection's (session:revoke audited). Before: the disable could not see the session
    and it stayed live."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: a login and a disable never overlap")
    conn, finish = _login(db, tenant, keys, hostile, web, protocol)
    admin = make_key(db, "admin", tenant.org)
    url = f"/api/v1/orgs/{tenant.org.id}/connections/{conn.id}"

    def end() -> Any:
        client = app.test_client()
        if how == "disable":
            return client.post(f"{url}/disable", headers=admin.headers)
        return client.delete(url, headers=admin.headers)

    with held(db, "SELECT seq FROM audit_chain_heads WHERE chain = :c FOR UPDATE",
              c=chain_for(tenant.org.id)):
        login, logged_in = started(db, finish)
        ender, ended = started(db, end, waiters=2)
    login.join(30)
    ender.join(30)
    assert not isinstance(ended.get("result"), BaseException), ended
    assert not isinstance(logged_in.get("result"), BaseException), logged_in
    assert ended["result"].status_code in (200, 204), ended["result"].text
    assert logged_in["result"].status_code == 303, logged_in["result"].text
    assert _live(db, conn) == 0, "a login outlived its connection's end"
    reason = "connection_disabled" if how == "disable" else "connection_deleted"
    assert [r.revoked_reason for r in rows(db, "SELECT revoked_reason FROM login_sessions")] \
        == [reason]
    assert len(rows(db, "SELECT id FROM audit_events WHERE action = 'session:revoke'")) == 1


@pytest.mark.parametrize("change", ["rename", "metadata"])
def test_a_login_and_an_other_change_of_its_connection_do_not_deadlock(db, tenant, keys,
                                                                       web, dialect, change):
    """A change of the connection that is not its end (a rename, a metadata import) writes
    the row at its commit, after the audit chain head; the login holds the row from its
    first read and takes the chain head at its commit. The change queues for the chain head
    first (held here), then the login: both succeed, in that order. A login holding the row
    in a mode a plain UPDATE waits for (FOR SHARE) deadlocked with it (PostgreSQL aborted
    one of them)."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: a login and a change never overlap")
    conn, finish = _login(db, tenant, keys, None, web, "saml")

    def other_change() -> None:
        with db.transaction() as s:
            found = s.get(SsoConnection, conn.id)
            if change == "rename":
                update_connection(s, found, OPERATOR, {"name": "renamed"})
            else:
                apply_idp_metadata(s, found, forge.idp_metadata([keys.idp.cert_b64]), OPERATOR)

    with held(db, "SELECT seq FROM audit_chain_heads WHERE chain = :c FOR UPDATE",
              c=chain_for(tenant.org.id)):
        changer, changed = started(db, other_change)
        login, logged_in = started(db, finish, waiters=2)
    changer.join(30)
    login.join(30)
    assert not isinstance(changed.get("result"), BaseException), changed
    assert not isinstance(logged_in.get("result"), BaseException), logged_in
    assert logged_in["result"].status_code == 303, logged_in["result"].text
    assert _live(db, conn) == 1
