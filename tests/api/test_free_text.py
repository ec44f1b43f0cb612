"""Free text people type (a role's description, an operator's deprovisioning or
reactivation reason) follows the rule of names (app/visible_names.py, text_problem): no
control character (ESC, BEL, U+0001, a line break or a tab: the text is one line in CLI
tables, the audit log and signed receipts), no bidirectional override or isolate, and a
visible character unless the optional field is empty. A 400 naming the field; nothing
written."""

from __future__ import annotations

import pytest

from tests.api.test_frame import assert_problem
from tests.conftest import rows
from tests.lifecycle.support import add_user

BAD = {"\x1b[31mred": "control character", "ring\x07": "control character",
       "a\x01b": "control character", "one\ntwo": "control character",
       "tab\there": "control character", "C1\x85next": "control character",
       "\u200b": "visible character", "\u200b\u2060\ufeff": "visible character",
       "Sales\u202eUE": "bidirectional", "\u2066left\u2069": "bidirectional"}


def _refused(response, field: str, why: str) -> None:
    body = assert_problem(response, 400, "validation")
    details = {e["field"]: e["detail"] for e in body["errors"]}
    assert why in details.get(field, ""), body


@pytest.mark.parametrize("text", list(BAD))
def test_a_role_description_with_controls_or_nothing_visible_is_refused(client, keys, tenant,
                                                                        db, text):
    """POST /orgs/{id}/roles: 400 naming description; no role made."""
    before = rows(db, "SELECT count(*) FROM roles")[0][0]
    _refused(client.post(f"/api/v1/orgs/{tenant.org.id}/roles", headers=keys["admin"].headers,
                         json={"key": "odd_role", "name": "Odd", "description": text}),
             "description", BAD[text])
    assert rows(db, "SELECT count(*) FROM roles")[0][0] == before


@pytest.mark.parametrize("text", ["", "Buys office supplies", "Einkauf\u00adsabteilung",
                                  "\u05e2\u05d1\u05e8\u05d9\u05ea\u200f 2"])
def test_an_empty_or_visible_role_description_is_kept(client, keys, tenant, text):
    """Empty (the default) or visible text, format characters inside it included."""
    response = client.post(f"/api/v1/orgs/{tenant.org.id}/roles", headers=keys["admin"].headers,
                           json={"key": "odd_role", "name": "Odd", "description": text})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["description"] == text


@pytest.mark.parametrize("text", list(BAD))
def test_a_deprovisioning_reason_with_controls_or_nothing_visible_is_refused(
        client, keys, tenant, db, text):
    """POST /users/{id}/deprovision and /reactivate: 400 naming reason; the user stays as
    it was, no record, no audit event."""
    user_id = add_user(db, tenant, "leaver")
    events = rows(db, "SELECT count(*) FROM audit_events")[0][0]
    for action in ("deprovision", "reactivate"):
        _refused(client.post(f"/api/v1/users/{user_id}/{action}",
                             headers=keys["operator"].headers, json={"reason": text}),
                 "reason", BAD[text])
    assert rows(db, "SELECT count(*) FROM deprovision_records")[0][0] == 0
    assert rows(db, "SELECT status FROM users WHERE id = :i", i=user_id)[0][0] == "active"
    assert rows(db, "SELECT count(*) FROM audit_events")[0][0] == events
