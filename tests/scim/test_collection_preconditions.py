"""Preconditions on reads and searches of a collection (RFC 9110 §13.1.1, §13.1.2, §13.2).

``/Users`` and ``/Groups`` exist and carry no entity tag (a list has no ETag), as on a
create (tests/scim/test_create_preconditions.py): ``If-Match: *`` holds, an ``If-Match``
listing entity tags cannot (412), ``If-None-Match: *`` is false (a GET or HEAD answers 304,
a ``.search`` POST 412), and an ``If-None-Match`` listing entity tags holds. So do the
discovery documents, which carry no ETag. Both headers used to be ignored: a GET with
``If-Match: "x"`` answered 200 with the list."""

from __future__ import annotations

import pytest

from tests.scim.support import Scim, assert_error

SEARCH = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}


@pytest.fixture
def scim(client, tenant):
    """A SCIM client for the acme tenant, with one user in one group."""
    scim = Scim(client, tenant)
    scim.create_group("Buyers", [scim.create_user()["id"]])
    return scim


def _send(scim: Scim, method: str, path: str, headers: dict[str, str]):
    if method == "POST":
        return scim.post(path, SEARCH, headers=headers)
    return scim.request(method, path, headers=headers)


READS = [("GET", "/Users"), ("HEAD", "/Users"), ("GET", "/Groups"), ("HEAD", "/Groups"),
         ("GET", "/Groups?excludedAttributes=members"),
         # Discovery documents have no entity tag either.
         ("GET", "/ServiceProviderConfig"), ("GET", "/Schemas"), ("HEAD", "/ResourceTypes"),
         ("GET", "/ResourceTypes/User"),
         ("GET", "/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group")]
SEARCHES = [("POST", "/Users/.search"), ("POST", "/Groups/.search"), ("POST", "/.search")]


@pytest.mark.parametrize(("method", "path"), READS + SEARCHES)
@pytest.mark.parametrize("value", ['"x"', 'W/"1"', '"*"', 'W/"1" junk'])
def test_if_match_with_entity_tags_on_a_collection_is_412(scim, method, path, value):
    """A collection has no entity tag, so none listed can match it (RFC 9110 §13.1.1)."""
    response = _send(scim, method, path, {"If-Match": value})
    assert response.status_code == 412
    if method != "HEAD":
        assert_error(response, 412)


@pytest.mark.parametrize(("method", "path"), READS)
def test_if_none_match_star_on_a_collection_read_is_304(scim, method, path):
    """The collection exists, so ``If-None-Match: *`` is false: a GET or HEAD is 304, with
    no body (RFC 9110 §13.1.2, §15.4.5)."""
    response = _send(scim, method, path, {"If-None-Match": "*"})
    assert response.status_code == 304
    assert response.get_data() == b""
    assert "Content-Type" not in response.headers


@pytest.mark.parametrize(("method", "path"), SEARCHES)
def test_if_none_match_star_on_a_search_is_412(scim, method, path):
    """A ``.search`` is a POST: a false ``If-None-Match`` is 412 there (RFC 9110 §13.1.2)."""
    assert_error(_send(scim, method, path, {"If-None-Match": "*"}), 412)


@pytest.mark.parametrize(("method", "path"), READS + SEARCHES)
@pytest.mark.parametrize(("header", "value"), [
    ("If-Match", "*"), ("If-None-Match", '"x"'), ("If-None-Match", 'W/"1", "2"')])
def test_a_collection_precondition_that_holds_answers_the_list(scim, method, path, header,
                                                                value):
    """``If-Match: *`` and an ``If-None-Match`` listing entity tags hold: the list as usual."""
    response = _send(scim, method, path, {header: value})
    assert response.status_code == 200, response.get_data(as_text=True)
    if method != "HEAD":
        assert response.get_json()["schemas"]


@pytest.mark.parametrize("headers", [{"If-Match": '"x"'}, {"If-None-Match": "*"}])
def test_a_bad_filter_is_400_whatever_the_preconditions(scim, headers):
    """Preconditions are ignored where the request would fail without them (RFC 9110
    §13.2.1): a bad filter stays a 400, not a 412 or a 304."""
    assert_error(scim.get("/Users", query_string={"filter": "nosuch eq 1"}, headers=headers),
                 400, "invalidFilter")


@pytest.mark.parametrize("headers", [{"If-Match": '"x"'}, {"If-None-Match": "*"}])
def test_an_unknown_discovery_item_is_404_whatever_the_preconditions(scim, headers):
    """A 404 without the preconditions stays a 404 with them (RFC 9110 §13.2.1)."""
    assert_error(scim.get("/Schemas/urn:nosuch", headers=headers), 404)


def test_okta_and_entra_list_lookups_without_preconditions_are_unchanged(scim):
    """The lookups IdPs send carry neither header: answered as before."""
    response = scim.get("/Users", query_string={"filter": 'userName eq "ada@acme.example"'})
    assert response.status_code == 200
    assert response.get_json()["totalResults"] == 1
