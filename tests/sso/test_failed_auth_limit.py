"""The OIDC provider's token endpoint counts failed client authentication per address."""

from __future__ import annotations

import base64
import copy
import secrets

from app import create_app

IP = {"REMOTE_ADDR": "203.0.113.7"}


def test_oidc_provider_token_endpoint_limits_bad_client_secrets(database_url, sso_app):
    """The OIDC provider's token endpoint counts failed client authentication too."""
    overrides = copy.deepcopy(sso_app.config["ROSTER"])
    overrides["ratelimit"] = {**overrides["ratelimit"], "failed_auth": "2/minute"}
    client = create_app(overrides).test_client()
    for _ in range(2):
        bad = base64.b64encode(f"portal:{secrets.token_urlsafe(8)}".encode()).decode()
        response = client.post("/sso/oidc/token", data={"grant_type": "refresh_token",
                                                        "refresh_token": "r"},
                               headers={"Authorization": f"Basic {bad}"}, environ_base=IP)
        assert response.status_code == 401, response.text
    response = client.post("/sso/oidc/token", data={"grant_type": "refresh_token",
                                                    "refresh_token": "r"},
                           headers={"Authorization": "Basic eDp5"}, environ_base=IP)
    assert response.status_code == 429
    assert response.get_json()["error"] == "temporarily_unavailable"
