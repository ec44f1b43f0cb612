"""The extension data Roster keeps as sent (blocks under URNs it has no schema for, Entra's
custom attributes), as stored and as shown (app/scim/opaque.py).

A row's ``extension_data`` that is not an object of ``urn:`` blocks (a hand-edited database,
an old bug) was a 500 on every read of the user, and of any list page holding it: it is left
out of the resource with a warning, and the next write repairs the row.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from app.db import JSONType
from tests.conftest import rows
from tests.scim.support import CORE_GROUP, CORE_USER, ENTERPRISE, PATCH_OP, Scim, user_body

CUSTOM = "urn:ietf:params:scim:schemas:extension:CustomExtensionName:2.0:User"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
SECRET = "s3cr3t-badge"


@pytest.fixture
def scim(client, tenant):
    return Scim(client, tenant)


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    logging.getLogger().addHandler(caplog.handler)  # create_app set up the root's handlers
    caplog.set_level(logging.WARNING, logger="app.scim.opaque")
    try:
        yield caplog
    finally:
        logging.getLogger().removeHandler(caplog.handler)


def _store(db, table: str, row_id: str, value: Any) -> None:
    """Write ``value`` into the row's extension_data behind Roster's back."""
    statement = sa.text(f"UPDATE {table} SET extension_data = :data WHERE id = :id")
    with db.engine.begin() as connection:
        connection.execute(statement.bindparams(sa.bindparam("data", type_=JSONType)),
                           {"data": value, "id": row_id})


def _extension_data(db, table: str, row_id: str) -> Any:
    [row] = rows(db, f"SELECT extension_data FROM {table} WHERE id = :id", id=row_id)
    value = row.extension_data  # text on SQLite, decoded jsonb on PostgreSQL
    return json.loads(value) if isinstance(value, str) else value


UNREADABLE = [
    pytest.param([SECRET], id="array"),
    pytest.param(SECRET, id="string"),
    pytest.param(7, id="number"),
    pytest.param({"badge": {"id": SECRET}}, id="no-urn-key"),
    pytest.param({CUSTOM: SECRET}, id="block-no-object"),
    pytest.param({ENTERPRISE: {"department": SECRET}}, id="known-schema"),
]


@pytest.mark.parametrize("bad", UNREADABLE)
def test_a_user_with_unreadable_extension_data_is_read_without_it(scim, db, warnings, bad):
    user = scim.create_user()
    _store(db, "users", user["id"], bad)
    read = scim.get(f"/Users/{user['id']}")
    assert read.status_code == 200, read.get_data(as_text=True)
    shown = read.get_json()
    assert SECRET not in read.get_data(as_text=True)
    assert shown["schemas"] == [CORE_USER, ENTERPRISE]
    assert shown[ENTERPRISE] == user[ENTERPRISE]
    listed = scim.get("/Users")
    assert listed.status_code == 200, listed.get_data(as_text=True)
    assert listed.get_json()["Resources"] == [shown]
    searched = scim.post("/Users/.search", {
        "schemas": [SEARCH], "filter": f'{CUSTOM}:badge pr or userName pr',
        "attributes": ["userName", CUSTOM]})
    assert searched.status_code == 200, searched.get_data(as_text=True)
    assert [r["id"] for r in searched.get_json()["Resources"]] == [user["id"]]
    scim.get(f"/Users/{user['id']}")
    # One warning for the row, naming it but nothing it holds.
    lines = [r.getMessage() for r in warnings.records if r.name == "app.scim.opaque"]
    assert len(lines) == 1, lines
    assert user["id"] in lines[0]
    assert SECRET not in lines[0]


@pytest.mark.parametrize("bad", UNREADABLE[:3])
def test_a_patch_works_and_repairs_the_row(scim, db, bad):
    user = scim.create_user()
    _store(db, "users", user["id"], bad)
    response = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "add", "path": f"{CUSTOM}:badge", "value": "B-1"}]})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()[CUSTOM] == {"badge": "B-1"}
    assert _extension_data(db, "users", user["id"]) == {CUSTOM: {"badge": "B-1"}}


@pytest.mark.parametrize("bad", UNREADABLE[3:])
def test_a_patch_of_another_attribute_works_and_repairs_the_row(scim, db, bad):
    user = scim.create_user()
    _store(db, "users", user["id"], bad)
    response = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "title", "value": "Engineer"}]})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["title"] == "Engineer"
    assert response.get_json()[ENTERPRISE] == user[ENTERPRISE]  # not the hidden one
    assert _extension_data(db, "users", user["id"]) == {}


def test_a_put_works_and_repairs_the_row(scim, db):
    user = scim.create_user()
    _store(db, "users", user["id"], [SECRET])
    response = scim.put(f"/Users/{user['id']}", user_body(**{CUSTOM: {"badge": "B-2"}}))
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()[CUSTOM] == {"badge": "B-2"}
    assert _extension_data(db, "users", user["id"]) == {CUSTOM: {"badge": "B-2"}}


def test_a_group_with_unreadable_extension_data_is_read_and_patched(scim, db):
    group = scim.create_group()
    _store(db, "groups", group["id"], SECRET)
    read = scim.get(f"/Groups/{group['id']}")
    assert read.status_code == 200, read.get_data(as_text=True)
    assert read.get_json()["schemas"] == [CORE_GROUP]
    assert scim.get("/Groups").status_code == 200
    response = scim.patch(f"/Groups/{group['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "displayName", "value": "Platform"}]})
    assert response.status_code == 204, response.get_data(as_text=True)
    assert _extension_data(db, "groups", group["id"]) == {}
