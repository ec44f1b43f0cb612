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


OTHER = "urn:ietf:params:scim:schemas:extension:Other:2.0:User"
# What the same user looks like however it is asked for: a projection that leaves the custom
# block alone must not change it (RFC 7644 §3.4.2.5).
PROJECTIONS = ["", f"?excludedAttributes={OTHER}", "?excludedAttributes=title",
               f"?excludedAttributes={ENTERPRISE}:department", f"?attributes={CUSTOM},userName"]


def _reads(scim: Scim, user_id: str) -> list[dict[str, Any]]:
    """The user read as each of PROJECTIONS, by id and in a list page."""
    out = []
    for query in PROJECTIONS:
        read = scim.get(f"/Users/{user_id}{query}")
        assert read.status_code == 200, read.get_data(as_text=True)
        listed = scim.get(f"/Users{query}")
        assert listed.get_json()["Resources"] == [read.get_json()]
        out.append(read.get_json())
    return out


def test_a_custom_block_of_only_null_is_no_block_however_it_is_read(scim):
    """RFC 7643 §2.5: null is unassigned, and Roster leaves unassigned attributes out. The
    block was shown (``{"costCenter": null}``, listed in ``schemas``) unless a projection
    named another attribute, which dropped it."""
    response = scim.post("/Users", user_body(**{CUSTOM: {"costCenter": None},
                                                 OTHER: {"x": "y"}}))
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert CUSTOM not in created
    assert CUSTOM not in created["schemas"]
    for read in _reads(scim, created["id"]):
        assert CUSTOM not in read
        assert CUSTOM not in read["schemas"]


def test_unassigned_members_go_at_any_depth_and_the_rest_is_kept(scim, db):
    block = {"badge": "B-1", "n": None, "e": "", "l": [], "o": {}, "zero": 0, "no": False,
             "deep": {"a": None, "b": [None, "", 1, {}], "c": {"d": None}}}
    kept = {"badge": "B-1", "zero": 0, "no": False, "deep": {"b": [1]}}
    response = scim.post("/Users", user_body(**{CUSTOM: block}))
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created[CUSTOM] == kept
    assert _extension_data(db, "users", created["id"]) == {CUSTOM: kept}
    for read in _reads(scim, created["id"]):
        assert read[CUSTOM] == kept
        assert CUSTOM in read["schemas"]


def test_an_empty_custom_block_is_not_listed_in_schemas(scim, db):
    """A block sent as ``{}`` was stored, and its URN listed in ``schemas`` with no block."""
    response = scim.post("/Users", user_body(**{CUSTOM: {}}))
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["schemas"] == [CORE_USER, ENTERPRISE]
    assert _extension_data(db, "users", created["id"]) == {}
    assert scim.get(f"/Users/{created['id']}").get_json()["schemas"] == [CORE_USER, ENTERPRISE]


def test_rows_stored_with_unassigned_members_read_the_same(scim, db):
    """Rows written before the rule: read through it, however they are asked for."""
    user = scim.create_user()
    _store(db, "users", user["id"], {CUSTOM: {"costCenter": None}, OTHER: {},
                                     "urn:example:kept:1.0:User": {"k": "v", "n": None}})
    for read in _reads(scim, user["id"]):
        assert CUSTOM not in read
        assert OTHER not in read
        assert set(read["schemas"]) <= {CORE_USER, ENTERPRISE, "urn:example:kept:1.0:User"}
    assert scim.get(f"/Users/{user['id']}").get_json()["urn:example:kept:1.0:User"] == \
        {"k": "v"}


@pytest.mark.parametrize("write", ["put", "patch"])
def test_a_block_sent_with_only_null_clears_it(scim, db, write):
    user = scim.create_user(**{CUSTOM: {"costCenter": "CC-7"}})
    if write == "put":
        response = scim.put(f"/Users/{user['id']}",
                            user_body(**{CUSTOM: {"costCenter": None}}))
    else:
        response = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": CUSTOM, "value": {"costCenter": None}}]})
    assert response.status_code == 200, response.get_json()
    assert CUSTOM not in response.get_json()
    assert CUSTOM not in response.get_json()["schemas"]
    assert _extension_data(db, "users", user["id"]) == {}


@pytest.mark.parametrize("urn", [CUSTOM, ENTERPRISE])
def test_a_block_sent_as_null_is_no_block_in_a_post_or_put(scim, urn):
    """RFC 7643 §2.5: ``"<urn>": null`` (typed SDKs send absent blocks so) is unassigned;
    it was 400 invalidValue ("must be an object"), as an array or a string still is."""
    response = scim.post("/Users", user_body(**{urn: None}))
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert urn not in created
    assert urn not in created["schemas"]
    user = scim.create_user("b@acme.example", **{CUSTOM: {"badge": "B-1"}})
    replaced = scim.put(f"/Users/{user['id']}", user_body("b@acme.example", **{urn: None}))
    assert replaced.status_code == 200, replaced.get_json()
    assert urn not in replaced.get_json()


@pytest.mark.parametrize("urn", [CUSTOM, ENTERPRISE])
@pytest.mark.parametrize("op", ["add", "replace"])
@pytest.mark.parametrize("pathless", [False, True])
def test_a_patch_setting_a_block_to_null_clears_it(scim, db, urn, op, pathless):
    """As null clears any attribute in a PATCH (and as ``remove`` of the block does); it was
    400 invalidValue."""
    user = scim.create_user(**{CUSTOM: {"badge": "B-1"}})
    operation = {"op": op, "value": {urn: None}} if pathless else \
        {"op": op, "path": urn, "value": None}
    response = scim.patch(f"/Users/{user['id']}", {"schemas": [PATCH_OP],
                                                   "Operations": [operation]})
    assert response.status_code == 200, response.get_json()
    patched = response.get_json()
    assert urn not in patched
    assert urn not in patched["schemas"]
    other = ENTERPRISE if urn == CUSTOM else CUSTOM
    assert patched[other] == user[other]
    assert scim.get(f"/Users/{user['id']}").get_json() == patched


def test_one_custom_block_in_two_spellings_is_one_block(scim, db):
    """URNs compare in any case (filters and PATCH paths fold them): a body naming one block
    twice, in two cases, was stored as two blocks, both listed in ``schemas``."""
    response = scim.post("/Users", user_body(**{CUSTOM: {"badge": "B-1"},
                                                 CUSTOM.lower(): {"floor": 2}}))
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created[CUSTOM] == {"badge": "B-1", "floor": 2}
    assert created["schemas"] == [CORE_USER, ENTERPRISE, CUSTOM]
    assert _extension_data(db, "users", created["id"]) == {CUSTOM: {"badge": "B-1", "floor": 2}}
    picked = scim.get(f"/Users/{created['id']}?attributes={CUSTOM}:floor").get_json()
    assert picked["schemas"] == [CORE_USER, CUSTOM]


def test_a_member_in_both_spellings_is_given_twice(scim):
    response = scim.post("/Users", user_body(**{CUSTOM: {"badge": "B-1"},
                                                 CUSTOM.upper(): {"BADGE": "B-2"}}))
    assert response.status_code == 400
    assert response.get_json()["scimType"] == "invalidValue"
    assert "given twice" in response.get_json()["detail"]


SHOUTED = "URN:IETF:PARAMS:SCIM:SCHEMAS:EXTENSION:CUSTOMEXTENSIONNAME:2.0:USER"


def test_a_block_whose_urn_is_upper_case_is_kept(scim, db):
    """The ``urn:`` scheme is case-insensitive (RFC 8141 §3.1), and Roster reads any URN in
    any case: a block under ``URN:...`` was accepted (201) and silently not stored."""
    response = scim.post("/Users", user_body(**{SHOUTED: {"badge": "B-1"}}))
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created[SHOUTED] == {"badge": "B-1"}
    assert SHOUTED in created["schemas"]
    assert _extension_data(db, "users", created["id"]) == {SHOUTED: {"badge": "B-1"}}
    patched = scim.patch(f"/Users/{created['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": f"{CUSTOM}:badge", "value": "B-2"}]})
    assert patched.status_code == 200, patched.get_json()
    assert patched.get_json()[SHOUTED] == {"badge": "B-2"}
    picked = scim.get(f"/Users/{created['id']}?attributes={CUSTOM}").get_json()
    assert picked[SHOUTED] == {"badge": "B-2"}
    assert picked["schemas"] == [CORE_USER, SHOUTED]
    dropped = scim.get(f"/Users/{created['id']}?excludedAttributes={CUSTOM}:badge").get_json()
    assert SHOUTED not in dropped
    assert SHOUTED not in dropped["schemas"]
    found = scim.get("/Users", query_string={"filter": f'{CUSTOM}:badge eq "b-2"'})
    assert [r["id"] for r in found.get_json()["Resources"]] == [created["id"]]


def test_a_group_block_whose_urn_is_upper_case_is_kept(scim, db):
    site = "URN:example:site:2.0:Group"
    response = scim.post("/Groups", {"schemas": [CORE_GROUP], "displayName": "Ops",
                                     site: {"site": "Paris"}})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()[site] == {"site": "Paris"}
    assert _extension_data(db, "groups", response.get_json()["id"]) == {site: {"site": "Paris"}}
