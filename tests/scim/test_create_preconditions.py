"""Preconditions on a create (RFC 9110 §13.1.1, §13.1.2, §13.2.2). The target resource of
``POST /Users`` or ``POST /Groups`` is the collection, not the resource the POST creates:
the collection exists (GET answers it) and has no entity tag. So ``If-Match: *`` holds and
``If-Match`` with entity tags cannot (412); ``If-None-Match: *`` fails (412) and
``If-None-Match`` with entity tags holds. Both headers used to be ignored on a POST."""

from __future__ import annotations

import pytest

from tests.conftest import rows
from tests.scim.support import CORE_GROUP, Scim, assert_error, user_body


@pytest.fixture
def scim(client, tenant):
    """A SCIM client for the acme tenant."""
    return Scim(client, tenant)


def _body(kind: str) -> dict:
    return user_body() if kind == "Users" else {"schemas": [CORE_GROUP],
                                                "displayName": "Buyers"}


def _count(db, kind: str) -> int:
    return rows(db, f"SELECT count(*) FROM {kind.lower()}")[0][0]


@pytest.mark.parametrize("kind", ["Users", "Groups"])
@pytest.mark.parametrize(("header", "value"), [
    ("If-Match", 'W/"1"'), ("If-Match", '"1", "2"'), ("If-Match", '"*"'),
    ("If-Match", 'W/"1" junk'), ("If-None-Match", "*"),
])
def test_a_create_whose_precondition_fails_is_412_and_creates_nothing(scim, db, kind,
                                                                      header, value):
    """An entity tag can never match the collection, which has none; ``If-None-Match: *``
    is false because the collection exists. 412, and nothing is created."""
    assert_error(scim.request("POST", f"/{kind}", _body(kind), headers={header: value}), 412)
    assert _count(db, kind) == 0


@pytest.mark.parametrize("kind", ["Users", "Groups"])
@pytest.mark.parametrize(("header", "value"), [
    ("If-Match", "*"), ("If-None-Match", 'W/"1"'), ("If-None-Match", '"a", "b"'),
])
def test_a_create_whose_precondition_holds_is_201(scim, db, kind, header, value):
    """``If-Match: *`` (the collection exists) and ``If-None-Match`` with entity tags (none
    matches) hold: the create runs."""
    response = scim.request("POST", f"/{kind}", _body(kind), headers={header: value})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert _count(db, kind) == 1


@pytest.mark.parametrize("kind", ["Users", "Groups"])
def test_if_none_match_star_on_a_read_of_an_existing_resource_is_304(scim, kind):
    """RFC 9110 §13.1.2: ``*`` is false when the resource exists; on a GET that is 304."""
    resource = scim.create_user() if kind == "Users" else scim.create_group("Buyers")
    response = scim.get(f"/{kind}/{resource['id']}", headers={"If-None-Match": "*"})
    assert response.status_code == 304
    assert response.headers["ETag"] == 'W/"1"'
