"""The SSO session cookie: Secure when Roster is served over https, HttpOnly always."""

from __future__ import annotations

import pytest
from flask import Flask

from app import create_app
from app.db import Database
from tests.sso.oidc_idp import oidc_connection


def _app(database_url: str, db: Database, base_url: str) -> Flask:
    """An SSO app at ``base_url`` sharing the suite's database handle."""
    app = create_app({"app": {"env": "test", "base_url": base_url, "secret_key": "t" * 40},
                      "database": {"url": database_url}, "logging": {"level": "WARNING"},
                      "ratelimit": {"storage": "memory"}})
    app.extensions["roster.db"].dispose()
    app.extensions["roster.db"] = db
    return app


@pytest.mark.parametrize("scheme", ["https", "http"])
def test_the_session_cookie_is_secure_when_served_over_https(database_url, db, tenant,
                                                             hostile, scheme):
    """Starting an OIDC login sets the session cookie that binds the attempt (and, after
    it, the login) to the browser: over https it carries Secure, so it is never sent in
    clear; over http (development) it cannot."""
    app = _app(database_url, db, f"{scheme}://roster.example")
    conn = oidc_connection(db, tenant, hostile)
    resp = app.test_client().get(f"/sso/oidc/{conn.id}/login",
                                 base_url=f"{scheme}://roster.example")
    assert resp.status_code == 303, resp.text
    [cookie] = [c for c in resp.headers.getlist("Set-Cookie") if c.startswith("session=")]
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert "httponly" in attributes
    assert ("secure" in attributes) is (scheme == "https")
