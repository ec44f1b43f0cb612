"""JIT logins under concurrency (PostgreSQL): they take their row locks in the write lock
order (app/mapping/reevaluation.py), the groups they change before their user, as a SCIM
group write does; and a group or user that a concurrent request created first is joined or
updated, not a refused sign-in."""

from __future__ import annotations

import threading

import pytest

from app.directory.groups import GroupInput, create_group, get_group
from app.directory.users import UserInput, create_user, get_user
from app.models import Directory
from tests.conftest import OPERATOR, rows
from tests.lockwait import wait_for_a_row_lock_wait
from tests.sso import forge
from tests.sso.conftest import claims_for, post_response, saml_connection, start


def _login(web, keys, conn, in_response_to: str, given_name: str, groups: list[str]):
    attributes = {"email": ["alice@acme.com"], "givenName": [given_name], "sn": ["Archer"],
                  "groups": groups}
    xml = forge.signed_response(claims_for(conn, in_response_to=in_response_to,
                                           attributes=attributes), keys.idp)
    return post_response(web, conn, forge.b64(xml))


def _background_login(web, keys, conn, request_id: str, given_name: str, groups: list[str]
                      ) -> tuple[threading.Thread, dict[str, object]]:
    """A login posted from a thread (not started yet) and where its outcome will be."""
    outcome: dict[str, object] = {}

    def login() -> None:
        try:
            outcome["login"] = _login(web, keys, conn, request_id, given_name,
                                      groups).status_code
        except Exception as exc:  # reported by the callers' assertions
            outcome["login"] = exc

    return threading.Thread(target=login), outcome


def test_a_jit_login_and_a_group_write_sharing_user_and_group_do_not_deadlock(
        db, tenant, keys, web, dialect):
    """A group write holds the group and then needs the user; meanwhile the user's JIT
    login leaves that group. Before, the login updated its user first and then waited for
    the group: each held what the other waited for, and PostgreSQL aborted one of them
    (40P01). Now the login waits for the group before it touches the user, so the group
    write gets the user, commits, and the login then completes."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time and no row locks")
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    assert _login(web, keys, conn, start(web, conn), "Alice", ["Buyers"]).status_code == 303
    [user] = rows(db, "SELECT id FROM users")
    [buyers] = rows(db, "SELECT id FROM groups WHERE display_name = 'Buyers'")
    request_id = start(web, conn)
    # A new givenName (its user row is written), and Buyers -> Approvers.
    worker, outcome = _background_login(web, keys, conn, request_id, "Alicia", ["Approvers"])
    with db.transaction() as session:
        get_group(session, tenant.directory.id, buyers.id, for_update=True)
        worker.start()
        wait_for_a_row_lock_wait(db)  # the login now waits for Buyers
        get_user(session, tenant.directory.id, user.id, for_update=True)
        outcome["group write"] = "locked the user"
    worker.join(30)
    assert outcome == {"group write": "locked the user", "login": 303}
    assert rows(db, "SELECT given_name FROM users")[0].given_name == "Alicia"
    groups = rows(db, "SELECT g.display_name FROM groups g JOIN memberships m "
                      "ON m.group_id = g.id WHERE m.user_id = :u", u=user.id)
    assert [g.display_name for g in groups] == ["Approvers"]


def test_a_jit_login_joins_the_group_a_concurrent_request_created_first(
        db, tenant, keys, web, dialect):
    """Two first logins (or a login and a SCIM POST) create the same new group at once: on
    PostgreSQL the later insert waits for the earlier commit and then meets the unique
    index. Before, that refused the sign-in (provisioning_error); now the login joins the
    group the other created."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: the second login sees the group")
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    request_id = start(web, conn)
    worker, outcome = _background_login(web, keys, conn, request_id, "Alice", ["Rollout"])
    with db.transaction() as session:
        directory = session.get(Directory, tenant.directory.id)
        create_group(session, directory, GroupInput(display_name="rollout"), OPERATOR)
        worker.start()
        wait_for_a_row_lock_wait(db)  # the login's insert waits on the unique index
    worker.join(30)
    assert outcome == {"login": 303}
    members = rows(db, "SELECT g.display_name, u.user_name FROM groups g "
                       "JOIN memberships m ON m.group_id = g.id JOIN users u ON u.id = m.user_id")
    assert [(m.display_name, m.user_name) for m in members] == [("rollout", "alice@acme.com")]
    assert rows(db, "SELECT count(*) AS n FROM sso_login_traces")[0].n == 0


def test_two_first_logins_of_one_person_at_once_both_sign_in(db, tenant, keys, web, dialect):
    """The same person's first login twice at once (two tabs): the later user insert meets
    the userName index after the first commit. Before, that sign-in was refused
    (provisioning_error); now it updates the user the other login created."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: the second login finds the user")
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    request_id = start(web, conn)
    worker, outcome = _background_login(web, keys, conn, request_id, "Alicia", [])
    with db.transaction() as session:
        directory = session.get(Directory, tenant.directory.id)
        create_user(session, directory, UserInput({"user_name": "alice@acme.com", "emails": [
            {"value": "alice@acme.com", "type": "work", "primary": True}]}, active=True),
            OPERATOR)
        worker.start()
        wait_for_a_row_lock_wait(db)  # the login's insert waits on the userName index
    worker.join(30)
    assert outcome == {"login": 303}
    users = rows(db, "SELECT id, user_name, given_name FROM users")
    assert [(u.user_name, u.given_name) for u in users] == [("alice@acme.com", "Alicia")]
    assert rows(db, "SELECT user_id FROM login_sessions")[0].user_id == users[0].id
