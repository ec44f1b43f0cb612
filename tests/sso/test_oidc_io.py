"""Every read of a customer's OIDC IdP (login, the API's and the CLI's discovery check)
happens while no write lock is held: a slow IdP never stalls other writers."""

from __future__ import annotations

import re

from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register
from tests.api.conftest import make_key
from tests.sso.conftest import provision
from tests.sso.lockprobe import can_write
from tests.sso.oidc_idp import (
    SECRET_KEY,
    follow_to_roster,
    oidc_connection,
    roster_path,
    start_login,
)

PROBE = "UPDATE sso_connections SET updated_at = updated_at"


def test_the_idp_is_read_while_no_write_lock_is_held(db, database_url, tenant, hostile, web,
                                                     sso_app):
    """Discovery, JWKS and code exchange during a login, the API's discovery check on
    create and `roster connection oidc --check`: at each request the database is writable."""
    seen: dict[str, list[bool]] = {}
    hostile.on_request = lambda path: seen.setdefault(path, []).append(can_write(db, PROBE))
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    # A cold cache, so that this login reads discovery and JWKS itself.
    sso_app.extensions.pop("roster.oidc_providers", None)
    resp = web.get(roster_path(follow_to_roster(start_login(web, conn))))
    assert resp.status_code == 303, resp.text
    assert {"/.well-known/openid-configuration", "/jwks", "/token"} <= set(seen)
    assert all(all(v) for v in seen.values()), seen
    seen.clear()
    admin = make_key(db, "admin", tenant.org)
    created = web.post(f"/api/v1/orgs/{tenant.org.id}/connections", headers=admin.headers,
                       json={"name": "checked", "protocol": "oidc", "client_id": "c",
                             "client_secret": "s", "discovery_url": hostile.discovery_url})
    assert created.status_code == 201, created.text
    assert set(seen) == {"/.well-known/openid-configuration"}
    register()
    result = CliRunner().invoke(
        cli, ["connection", "oidc", created.get_json()["id"], "--discovery-url",
              hostile.discovery_url, "--client-id", "cli"],
        env={"ROSTER_DATABASE__URL": database_url, "ROSTER_APP__SECRET_KEY": SECRET_KEY},
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert re.search(r"issuer: +http://127\.0\.0\.1", result.output)
    assert len(seen["/.well-known/openid-configuration"]) == 2
    assert all(all(v) for v in seen.values()), seen
