"""Discovery endpoints (RFC 7644 §4): truthful, SCIM media type, 405 on wrong methods."""

from __future__ import annotations

import pytest

from tests.scim.support import CORE_USER, SCIM, Scim, assert_error

SPC = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"


@pytest.fixture
def scim(client, tenant):
    """A SCIM client for the acme tenant."""
    return Scim(client, tenant)


def test_service_provider_config_advertises_what_is_implemented(scim, app):
    """patch, filter, sort, etag, bulk on; changePassword off; real limits."""
    response = scim.get("/ServiceProviderConfig")
    assert response.status_code == 200
    assert response.mimetype == SCIM
    body = response.get_json()
    settings = app.config["ROSTER"]["scim"]
    assert body["schemas"] == [SPC]
    assert body["patch"] == {"supported": True}
    assert body["bulk"] == {"supported": True, "maxOperations": settings["bulk_max_operations"],
                            "maxPayloadSize": settings["bulk_max_payload_bytes"]}
    assert body["filter"] == {"supported": True, "maxResults": settings["max_filter_results"]}
    assert body["sort"] == {"supported": True}
    assert body["etag"] == {"supported": True}
    assert body["changePassword"] == {"supported": False}
    assert body["pagination"]["maxPageSize"] == settings["max_page_size"]
    assert body["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    assert "documentationUri" not in body  # there is no such page to point at


def test_change_password_is_advertised_when_passwords_are_kept(scim, app):
    """A password is always accepted, but only with scim.store_password_hash does a change
    do anything: changePassword says which (RFC 7643 §5)."""
    app.config["ROSTER"]["scim"]["store_password_hash"] = True
    try:
        body = scim.get("/ServiceProviderConfig").get_json()
    finally:
        app.config["ROSTER"]["scim"]["store_password_hash"] = False
    assert body["changePassword"] == {"supported": True}


def test_advertised_max_page_size_is_enforced(scim, app):
    """count above maxPageSize is capped at it (RFC 7644 §3.4.2.4)."""
    app.config["ROSTER"]["scim"]["max_page_size"] = 2
    try:
        for i in range(3):
            scim.create_user(f"u{i}@acme.example")
        body = scim.get("/Users?count=50").get_json()
        assert scim.get("/ServiceProviderConfig").get_json()["pagination"]["maxPageSize"] == 2
    finally:
        app.config["ROSTER"]["scim"]["max_page_size"] = 1000
    assert (body["totalResults"], body["itemsPerPage"]) == (3, 2)


def test_resource_types_list_user_and_group(scim):
    """/ResourceTypes: User with the enterprise and access extensions, and Group."""
    body = scim.get("/ResourceTypes").get_json()
    assert body["totalResults"] == 2
    by_id = {r["id"]: r for r in body["Resources"]}
    assert by_id["User"]["endpoint"] == "/Users"
    assert {e["schema"] for e in by_id["User"]["schemaExtensions"]} == {
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        "urn:roster:params:scim:schemas:extension:access:2.0:User"}
    assert scim.get("/ResourceTypes/Group").get_json()["schema"] == \
        "urn:ietf:params:scim:schemas:core:2.0:Group"
    assert_error(scim.get("/ResourceTypes/Nope"), 404)


def test_schemas_list_and_get_one(scim):
    """/Schemas lists four schemas; /Schemas/{urn} returns one; password is returned never."""
    body = scim.get("/Schemas").get_json()
    assert body["totalResults"] == 4
    user = scim.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User").get_json()
    password = next(a for a in user["attributes"] if a["name"] == "password")
    assert (password["returned"], password["mutability"]) == ("never", "writeOnly")
    assert_error(scim.get("/Schemas/urn:nope"), 404)


@pytest.mark.parametrize("path", ["/ServiceProviderConfig", "/ResourceTypes", "/Schemas",
                                  "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User"])
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_wrong_method_on_discovery_is_scim_405(scim, path, method):
    """Discovery is read-only: other methods get a SCIM 405 with Allow: GET, HEAD."""
    response = scim.request(method, path)
    assert_error(response, 405)
    assert response.headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize(("path", "allow"), [("/ServiceProviderConfig", "GET, HEAD"),
                                             ("/Users", "GET, HEAD, POST"), ("/Bulk", "POST")])
@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "FOO"])
def test_a_method_nothing_routes_is_the_endpoints_405_with_allow(scim, path, method, allow):
    """A method no route lists is still the endpoint's SCIM 405, and names what it allows
    (RFC 9110 §15.5.6: a 405 MUST carry Allow); it had no Allow."""
    response = scim.request(method, path)
    assert "not supported on this endpoint" in assert_error(response, 405)["detail"]
    assert response.headers["Allow"] == allow


@pytest.mark.parametrize(("path", "allow"), [
    ("/Users/{id}", "GET, HEAD, PUT, PATCH, DELETE"), ("/Groups", "GET, HEAD, POST"),
    ("/Users/.search", "POST"), ("/Schemas", "GET, HEAD")])
def test_allow_names_head_which_every_get_endpoint_serves(scim, path, allow):
    """RFC 9110 §15.5.6: a 405's Allow lists the methods the resource supports. HEAD was
    answered (200, the GET's headers) on every GET endpoint yet missing from Allow, which
    the API's 405s name."""
    path = path.format(id=scim.create_user()["id"]) if "{id}" in path else path
    response = scim.request("OPTIONS", path)
    assert_error(response, 405)
    assert response.headers["Allow"] == allow
    if "HEAD" in allow:
        head = scim.request("HEAD", path)
        assert head.status_code == 200
        assert head.get_data() == b""


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND"])
def test_a_method_nothing_routes_on_an_unknown_scim_path_is_its_404(client, method):
    """The catch-all of unknown SCIM paths raises its 404: answered as a SCIM error, not a
    500 (with a token or without)."""
    for path in ("/scim/v2/Nope", "/scim/v2/"):
        response = client.open(path, method=method)
        assert response.status_code == 404
        assert response.get_json()["status"] == "404"


def test_outside_scim_a_405_names_the_allowed_methods_too(client):
    """The operational endpoints answer JSON, with Allow as well."""
    response = client.open("/healthz", method="FOO")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_me_is_501(scim, method):
    """/Me (RFC 7644 §3.11): the caller is a directory, not a user: 501 Not Implemented."""
    assert_error(scim.request(method, "/Me"), 501)


@pytest.mark.parametrize("path", ["/", "", "/Nope", "/Users/x/y", "/Bulk2", "/v1/Users"])
def test_unknown_paths_are_scim_404(scim, path):
    """Anything else under /scim/v2 is a SCIM 404; the base URL itself too, with or without
    its slash (not Flask's HTML redirect)."""
    assert_error(scim.get(path), 404)


@pytest.mark.parametrize("path", ["/ServiceProviderConfig", "/ResourceTypes", "/Schemas",
                                  "/ResourceTypes/User", f"/Schemas/{CORE_USER}"])
def test_a_filter_on_discovery_is_403(scim, path):
    """"If a filter is provided, the service provider SHOULD respond with HTTP status code
    403 (Forbidden)" (RFC 7644 §4): a 200 with everything would read as every item matching."""
    assert_error(scim.get(f"{path}?filter=name%20eq%20%22Group%22"), 403)
    assert scim.get(path).status_code == 200


def test_discovery_requires_a_token(client):
    """Without a token even discovery is 401 with WWW-Authenticate: Bearer."""
    response = client.get("/scim/v2/ServiceProviderConfig")
    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
