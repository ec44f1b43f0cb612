"""OPTIONS is refused with 405 in each protocol's format, never an automatic empty 200."""

from __future__ import annotations

import pytest

from tests.api.test_frame import assert_problem


@pytest.mark.parametrize("path", ["/api/v1/orgs", "/api/v1/openapi.json",
                                  "/api/v1/orgs/acme/directories"])
def test_options_under_the_api_is_a_405_problem_with_allow(client, keys, path):
    """Flask answered an empty text/html 200 that no OpenAPI operation described."""
    response = client.options(path, headers=keys["operator"].headers)
    body = assert_problem(response, 405, "method-not-allowed")
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert "GET" in allowed
    assert "OPTIONS" not in allowed
    assert "OPTIONS" in body["detail"]


def test_the_openapi_document_lists_no_options_and_says_why(client):
    """The description says OPTIONS is a 405; no path has an options operation."""
    document = client.get("/api/v1/openapi.json").get_json()
    assert all("options" not in operations for operations in document["paths"].values())
    assert "OPTIONS" in document["info"]["description"]


@pytest.mark.parametrize("path", ["/scim/v2/Users", "/scim/v2/ServiceProviderConfig"])
def test_options_under_scim_is_a_scim_405(client, tenant, path):
    """SCIM answers its error JSON with status "405" and Allow."""
    response = client.options(path, headers=tenant.headers)
    assert response.status_code == 405
    assert response.mimetype == "application/scim+json"
    assert response.get_json(force=True)["status"] == "405"
    assert "OPTIONS" not in response.headers["Allow"]


@pytest.mark.parametrize("path", ["/oauth/token", "/sso/oidc/token", "/healthz"])
def test_options_elsewhere_is_a_json_405_not_an_empty_html_200(client, path):
    """The token endpoints and probes refuse it too, in JSON."""
    response = client.options(path)
    assert response.status_code == 405
    assert response.mimetype == "application/json"
    assert "OPTIONS" not in response.headers["Allow"]
