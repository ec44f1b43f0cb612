"""The media type of SCIM responses (RFC 7644 §3.8): application/scim+json by default, and
application/json to a client that prefers it ("SHOULD support the header Accept:
application/json"); it was scim+json whatever the client asked for. A client accepting
neither still gets scim+json, never a 406: an IdP's odd Accept must not stop provisioning
(RFC 9110 §12.5.1 lets a server disregard the header)."""

from __future__ import annotations

import json

import pytest

from tests.scim.support import ERROR, PATCH_OP, SCIM, Scim, user_body

JSON = "application/json"


@pytest.fixture
def scim(client, tenant):
    return Scim(client, tenant)


@pytest.mark.parametrize(("accept", "expected"), [
    (None, SCIM),
    (SCIM, SCIM),
    ("application/scim+json; charset=utf-8", SCIM),
    ("*/*", SCIM),
    ("application/*", SCIM),
    ("application/json, application/scim+json", SCIM),
    ("application/json;q=0.5, application/scim+json", SCIM),
    ("text/html", SCIM),
    ("application/xml", SCIM),
    ("application/scim+json;q=0", SCIM),
    (JSON, JSON),
    ("Application/JSON", JSON),
    ("application/json; charset=utf-8", JSON),
    ("application/json, text/plain, */*", JSON),
    ("application/scim+json;q=0.2, application/json", JSON),
    ("application/scim+json;q=0, application/*", JSON),
])
def test_a_resource_comes_in_the_type_the_client_prefers(scim, accept, expected):
    user = scim.create_user()
    headers = {"Accept": accept} if accept else {}
    response = scim.get(f"/Users/{user['id']}", headers=headers)
    assert response.status_code == 200
    assert response.mimetype == expected
    assert response.get_json(force=True)["id"] == user["id"]


def test_every_kind_of_response_follows_accept(scim):
    """Created, listed, patched, an error, a 404 path, discovery and a 204 alike."""
    headers = {"Accept": JSON}
    created = scim.request("POST", "/Users", data=json.dumps(user_body()),
                           content_type=JSON, headers=headers)
    assert (created.status_code, created.mimetype) == (201, JSON)
    user_id = created.get_json()["id"]
    for response, status in [
        (scim.get("/Users?filter=userName%20eq%20%22ada@acme.example%22", headers=headers), 200),
        (scim.patch(f"/Users/{user_id}", {"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "title", "value": "CTO"}]}, headers=headers), 200),
        (scim.post("/Users", user_body(), headers=headers), 409),
        (scim.get("/Nowhere", headers=headers), 404),
        (scim.get("/ServiceProviderConfig", headers=headers), 200),
        (scim.client.get("/scim/v2/Users", headers=headers), 401),
        (scim.delete(f"/Users/{user_id}", headers=headers), 204),
    ]:
        assert (response.status_code, response.mimetype) == (status, JSON)
        if status >= 400:
            assert response.get_json()["schemas"] == [ERROR]


def test_the_version_is_the_same_whatever_the_type(scim):
    """The representation is one: its ETag does not depend on the media type."""
    user = scim.create_user()
    as_json = scim.get(f"/Users/{user['id']}", headers={"Accept": JSON})
    as_scim = scim.get(f"/Users/{user['id']}")
    assert as_json.headers["ETag"] == as_scim.headers["ETag"]
    assert as_json.get_json() == as_scim.get_json()
