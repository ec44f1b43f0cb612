"""The CLI's free text (`roster lifecycle deprovision|reactivate --reason`, `roster mapping
role add --description`) follows the API's rule (app/visible_names.py, text_problem): a
control character (ESC, BEL, a line break, a tab), a bidirectional override or nothing
visible is a one-line error naming the option; nothing written."""

from __future__ import annotations

import pytest

from tests.conftest import rows
from tests.lifecycle.support import add_user, roster

BAD = ["\x1b]52;c;ZWNobyBoaQ==\x07", "a\x01b", "one\ntwo", "tab\there", "\u200b\u2060",
       "Sales\u202eUE"]


@pytest.mark.parametrize("text", BAD)
def test_a_reason_with_controls_or_nothing_visible_is_refused(db, tenant, database_url, text):
    """deprovision and reactivate: exit 2 naming --reason; the user stays active."""
    user_id = add_user(db, tenant, "leaver")
    for action in ("deprovision", "reactivate"):
        result = roster(database_url, "lifecycle", action, "--org", "acme", "leaver",
                        "--reason", text, ok=False)
        assert "--reason" in result.output
        assert "must " in result.output
    assert rows(db, "SELECT count(*) FROM deprovision_records")[0][0] == 0
    assert rows(db, "SELECT status FROM users WHERE id = :i", i=user_id)[0][0] == "active"


@pytest.mark.parametrize("text", BAD)
def test_a_role_description_with_controls_or_nothing_visible_is_refused(db, tenant,
                                                                        database_url, text):
    """role add --description: a one-line error naming the description; no role made."""
    before = rows(db, "SELECT count(*) FROM roles")[0][0]
    result = roster(database_url, "role", "add", "odd_role", "--org", "acme",
                    "--permission", "orders.view_own", "--description", text, ok=False)
    assert "description must" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert rows(db, "SELECT count(*) FROM roles")[0][0] == before


def test_a_plain_role_description_is_kept(db, tenant, database_url):
    """Visible one-line text is stored as given."""
    roster(database_url, "role", "add", "odd_role", "--org", "acme",
           "--permission", "orders.view_own", "--description", "Buys office supplies")
    assert rows(db, "SELECT description FROM roles WHERE key = 'odd_role'")[0][0] == (
        "Buys office supplies")
