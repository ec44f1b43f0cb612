"""A refused sortBy (RFC 7644 §3.4.2.3) suggests attributes of the resource type asked
for: a Group's named userName and emails, which Groups do not have."""

from __future__ import annotations

import pytest

from tests.scim.support import Scim, assert_error


@pytest.fixture
def scim(client, tenant):
    return Scim(client, tenant)


@pytest.mark.parametrize("sort_by", ["members", "members.value",
                                     "urn:ietf:params:scim:schemas:extension:Acme:2.0:Group:x"])
def test_a_group_sort_refused_suggests_group_attributes(scim, sort_by):
    detail = assert_error(scim.get("/Groups", query_string={"sortBy": sort_by}), 400,
                          "invalidValue")["detail"]
    assert "displayName, externalId or meta.created" in detail
    assert "userName" not in detail


@pytest.mark.parametrize("sort_by", ["displayName", "externalId", "meta.created"])
def test_the_suggested_group_attributes_sort(scim, sort_by):
    scim.create_group("B")
    scim.create_group("A")
    response = scim.get("/Groups", query_string={"sortBy": sort_by})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["totalResults"] == 2


@pytest.mark.parametrize("sort_by", ["groups", "name"])
def test_a_user_sort_refused_suggests_user_attributes(scim, sort_by):
    detail = assert_error(scim.get("/Users", query_string={"sortBy": sort_by}), 400,
                          "invalidValue")["detail"]
    assert "userName, meta.created or emails" in detail
