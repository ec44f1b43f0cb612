"""An SSO login racing its user's deprovisioning (PostgreSQL): no session outlives the leaver.

A deprovisioning revokes the user's sessions by one UPDATE, which cannot see a session a
login inserted and has not committed yet; and the login read the user's status without a
lock. So a login that read "active" and committed after the deprovisioning's revocation
left a live session for a deprovisioned user: through a connection without a directory (no
directory row held), and through a directory-bound one too (its directory FOR SHARE does not
conflict with a SCIM write's). Now the login holds its user's row FOR SHARE and re-reads the
status before it opens the session, and every deprovisioning holds the user's row before it
revokes: one waits for the other.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from app.audit.log import chain_for
from app.lifecycle import Trigger, deprovision_user
from app.models import User
from tests.conftest import OPERATOR, rows
from tests.lockwait import held, started
from tests.scim.support import PATCH_OP, SCIM
from tests.sso import forge
from tests.sso.conftest import claims_for, post_response, provision, saml_connection, start

OFF = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active",
                                              "value": False}]}


@pytest.mark.parametrize("deprovisioner", ["scim", "operator"])
@pytest.mark.parametrize("bound", [False, True], ids=["no-directory", "directory-bound"])
def test_a_login_committing_after_a_deprovisioning_leaves_no_live_session(
        app, db, tenant, keys, web, dialect, bound, deprovisioner):
    """The login has read its user and opened a session, and waits at its commit (the audit
    chain head, held here); the user is deprovisioned meanwhile (SCIM active=false, or an
    operator). Both commit: the user ends with no live session (before: the session the
    deprovisioning could not see stayed live)."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: a login and a deprovisioning never "
                    "overlap")
    user = provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    if not bound:
        with db.engine.begin() as c:
            c.execute(sa.text("UPDATE sso_connections SET directory_id = NULL WHERE id = :i"),
                      {"i": conn.id})
    xml = forge.signed_response(claims_for(conn, in_response_to=start(web, conn)), keys.idp)

    def deprovision() -> Any:
        if deprovisioner == "scim":
            return app.test_client().patch(f"/scim/v2/Users/{user.id}", json=OFF,
                                           content_type=SCIM, headers=tenant.headers)
        with db.transaction() as s:
            return deprovision_user(s, s.get(User, user.id), OPERATOR,
                                    trigger=Trigger.operator)

    with held(db, "SELECT seq FROM audit_chain_heads WHERE chain = :c FOR UPDATE",
              c=chain_for(tenant.org.id)):
        # The login, at its commit; then the deprovisioning, waiting too or done.
        login, logged_in = started(db, lambda: post_response(web, conn, forge.b64(xml)))
        out, taken_out = started(db, deprovision, waiters=2)
    login.join(30)
    out.join(30)
    assert not isinstance(taken_out.get("result"), BaseException), taken_out
    assert not isinstance(logged_in.get("result"), BaseException), logged_in
    assert logged_in["result"].status_code in (303, 403), logged_in["result"].text
    assert rows(db, "SELECT status FROM users WHERE id = :u", u=user.id)[0][0] == \
        "deprovisioned"
    live = rows(db, "SELECT id FROM login_sessions WHERE user_id = :u AND revoked_at IS NULL",
                u=user.id)
    assert live == [], "a deprovisioned user kept a live session"


def test_a_login_during_an_open_deprovisioning_waits_and_is_refused(db, tenant, keys, web,
                                                                     dialect):
    """A deprovisioning has revoked the user's sessions and not committed yet when a login
    through a connection without a directory reads the user: the login waits for it, then
    is refused (user_deprovisioned), and no session is left (before: 303 at once, and its
    session outlived the deprovisioning)."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time")
    user = provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    with db.engine.begin() as c:
        c.execute(sa.text("UPDATE sso_connections SET directory_id = NULL WHERE id = :i"),
                  {"i": conn.id})
    xml = forge.signed_response(claims_for(conn, in_response_to=start(web, conn)), keys.idp)
    with db.transaction() as s:
        deprovision_user(s, s.get(User, user.id), OPERATOR, trigger=Trigger.operator)
        s.flush()
        login, logged_in = started(db, lambda: post_response(web, conn, forge.b64(xml)))
        waited = login.is_alive()
    login.join(30)
    response = logged_in["result"]
    assert not isinstance(response, BaseException), response
    assert waited, "the login did not wait for the deprovisioning in flight"
    assert response.status_code == 403, response.text
    assert rows(db, "SELECT reason FROM sso_login_traces")[-1].reason == "user_deprovisioned"
    assert rows(db, "SELECT count(*) FROM login_sessions WHERE user_id = :u AND revoked_at "
                    "IS NULL", u=user.id)[0][0] == 0
