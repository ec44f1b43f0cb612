"""A PUT replaces the resource: readWrite attributes it omits are cleared (RFC 7644 §3.5.1:
"The service provider MAY assume that any existing values are to be cleared"), externalId
included, as a PUT that sends them replaces them. The one exception is ``active``, which an
omitting PUT keeps (Okta's GET-then-PUT, tests/scim/test_users.py). Clients that mean to
keep a value send it back (Okta PUTs the whole resource it read); a partial update is a
PATCH."""

from __future__ import annotations

import pytest

from tests.conftest import rows
from tests.scim.support import CORE_GROUP, CORE_USER, Scim, user_body

CUSTOM = "urn:ietf:params:scim:schemas:extension:Acme:2.0:User"


@pytest.fixture
def scim(client, tenant):
    return Scim(client, tenant)


def test_a_put_without_external_id_and_others_clears_them(scim, db):
    user = scim.create_user(title="CTO", phoneNumbers=[{"value": "+44 1", "type": "work"}],
                            **{CUSTOM: {"badge": "b1"}})
    assert user["externalId"] == "00u1"
    body = {"schemas": [CORE_USER], "userName": "ada@acme.example"}
    response = scim.put(f"/Users/{user['id']}", body)
    assert response.status_code == 200, response.get_json()
    for shown in (response.get_json(), scim.get(f"/Users/{user['id']}").get_json()):
        for gone in ("externalId", "title", "name", "emails", "phoneNumbers", CUSTOM):
            assert gone not in shown, gone
        assert shown["active"] is True
        assert shown["schemas"] == [CORE_USER]
    [row] = rows(db, "SELECT external_id, title FROM users WHERE id = :i", i=user["id"])
    assert tuple(row) == (None, None)
    found = scim.get('/Users?filter=externalId%20eq%20%2200u1%22').get_json()
    assert found["totalResults"] == 0


def test_a_put_sending_them_back_keeps_them(scim):
    user = scim.create_user(**{CUSTOM: {"badge": "b1"}})
    current = scim.get(f"/Users/{user['id']}").get_json()
    response = scim.put(f"/Users/{user['id']}", user_body(**{CUSTOM: {"badge": "b1"}}))
    assert response.status_code == 200, response.get_json()
    after = response.get_json()
    for kept in ("externalId", "name", "emails", CUSTOM):
        assert after[kept] == current[kept], kept


def test_a_group_put_without_external_id_clears_it(scim):
    created = scim.post("/Groups", {"schemas": [CORE_GROUP], "displayName": "Ops",
                                    "externalId": "grp-1"})
    assert created.status_code == 201, created.get_json()
    group = created.get_json()
    assert group["externalId"] == "grp-1"
    response = scim.put(f"/Groups/{group['id']}", {"schemas": [CORE_GROUP],
                                                   "displayName": "Ops"})
    assert response.status_code == 200, response.get_json()
    assert "externalId" not in scim.get(f"/Groups/{group['id']}").get_json()
