"""A JIT first login while a rule-set apply is open (PostgreSQL): the login evaluates its
user's grants, so it waits for the apply (the organization's mapping lock,
app/mapping/locks.py) and then gets the new rules. Before, it signed in at once under the
rules being replaced, and nothing corrected its grants until the user changed again."""

from __future__ import annotations

import pytest

from app.directory.organizations import add_unit
from app.mapping.preview import apply_ruleset
from app.mapping.ruleset import parse_document
from app.models import Organization
from tests.conftest import OPERATOR, rows
from tests.lockwait import wait_for_a_row_lock_wait
from tests.sso.conftest import saml_connection, start
from tests.sso.test_jit_concurrency import _background_login

BUYERS = {"group": "Buyers"}
OLD = {"rules": [{"id": "old", "role": "buyer", "unit": "Engineering", "match": BUYERS}]}
NEW = {"rules": [{"id": "new", "role": "technician", "unit": "Sales", "match": BUYERS}]}


def _apply(session, org_id: str, document: dict) -> None:
    apply_ruleset(session, session.get(Organization, org_id), parse_document(document),
                  OPERATOR, max_loss_share=1.0, force=True)


def test_a_jit_login_during_an_open_apply_waits_and_gets_the_new_rules(
        db, tenant, keys, web, dialect):
    """The first login of a Buyers member while Buyers moves from buyer/Engineering to
    technician/Sales: it waits for the apply's commit, then holds only the new grant."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: an apply and a login never overlap")
    with db.transaction() as s:
        org = s.get(Organization, tenant.org.id)
        for name in ("Engineering", "Sales"):
            add_unit(s, org, name, "department", None, OPERATOR)
        _apply(s, tenant.org.id, OLD)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    worker, outcome = _background_login(web, keys, conn, start(web, conn), "Alice",
                                        ["Buyers"])
    with db.transaction() as s:
        _apply(s, tenant.org.id, NEW)
        worker.start()
        wait_for_a_row_lock_wait(db)
        worker.join(0.3)
        assert worker.is_alive(), f"the login did not wait for the apply: {outcome}"
    worker.join(30)
    assert outcome == {"login": 303}
    grants = rows(db, "SELECT roles.key, units.path, grants.source FROM grants "
                      "JOIN roles ON roles.id = grants.role_id "
                      "JOIN units ON units.id = grants.unit_id")
    assert [tuple(g) for g in grants] == [("technician", "Sales", "rule:new")]


def test_a_jit_login_behind_an_apply_longer_than_the_bound_is_a_503_page(
        db, tenant, keys, web, dialect):
    """A first login while an apply stays open past ``[mapping] write_wait_ms`` (3 s by
    default): the sign-in page answers 503 with Retry-After, and no user is created (before:
    the login held its request thread until the apply committed)."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: an apply and a login never overlap")
    with db.transaction() as s:
        org = s.get(Organization, tenant.org.id)
        for name in ("Engineering", "Sales"):
            add_unit(s, org, name, "department", None, OPERATOR)
        _apply(s, tenant.org.id, OLD)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    worker, outcome = _background_login(web, keys, conn, start(web, conn), "Alice",
                                        ["Buyers"])
    with db.transaction() as s:
        _apply(s, tenant.org.id, NEW)
        worker.start()
        worker.join(3 + 10)
        assert not worker.is_alive(), "the login is still waiting for the apply"
    assert outcome == {"login": 503}
    assert rows(db, "SELECT count(*) FROM users")[0][0] == 0
