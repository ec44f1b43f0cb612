"""A JIT login racing its user's deprovisioning (PostgreSQL): the leaver gets nothing back.

A JIT login writes what the IdP asserts and re-evaluates the mapping before it holds the
user's row and re-reads its status. It read the user before the deprovisioning committed,
so the mapping judged a stale copy ("active") and gave the deprovisioned user its grants
again (``grant.added`` to the portal); the refusal then kept them (``keep_changes``).
"""

from __future__ import annotations

from typing import Any

import pytest

from app.lifecycle import Trigger, deprovision_user
from app.models import User
from tests.conftest import OPERATOR, rows
from tests.lockwait import started
from tests.sso.conftest import saml_connection
from tests.sso.test_jit_loss import _rules, _saml_login


def test_a_jit_login_during_an_open_deprovisioning_gives_no_grant_back(db, tenant, keys, web,
                                                                      dialect):
    """A deprovisioning has taken the JIT user's grant and not committed yet when the user
    signs in again: the login waits for it and is refused, and the user stays out with no
    grant, no live session and no ``grant.added`` after its ``user.deprovisioned``."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time")
    _rules(db, tenant, "deprovision", "Buyers")
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    assert _saml_login(web, keys, conn, ["Buyers"]).status_code == 303
    [user] = rows(db, "SELECT id FROM users")

    with db.transaction() as s:
        deprovision_user(s, s.get(User, user.id), OPERATOR, trigger=Trigger.operator)
        s.flush()
        login, logged_in = started(db, lambda: _saml_login(web, keys, conn, ["Buyers"]))
        waited = login.is_alive()
    login.join(30)
    response: Any = logged_in["result"]
    assert not isinstance(response, BaseException), response
    assert waited, "the login did not wait for the deprovisioning in flight"
    assert response.status_code == 403, response.text
    assert rows(db, "SELECT status, active FROM users WHERE id = :u", u=user.id)[0] == (
        "deprovisioned", False)
    assert rows(db, "SELECT count(*) FROM grants WHERE user_id = :u", u=user.id)[0][0] == 0, \
        "a deprovisioned user holds a grant again"
    assert rows(db, "SELECT count(*) FROM login_sessions WHERE user_id = :u AND "
                    "revoked_at IS NULL", u=user.id)[0][0] == 0
    types = [r.type for r in rows(db, "SELECT type FROM outbox_events WHERE aggregate_id = :u "
                                      "ORDER BY id", u=user.id)]
    assert "grant.added" not in types[types.index("user.deprovisioned"):], types
