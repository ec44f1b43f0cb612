"""Signed AuthnRequests need the deployment's SP key: asking for them without one is refused
(CLI and API), and a connection that has them on where the key is missing is logged on each
login and metadata request instead of being signed silently not at all."""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from app import create_app
from app.cli import cli
from app.cli.commands import register
from tests.api.conftest import make_key
from tests.conftest import app_overrides, rows
from tests.sso.conftest import saml_connection

register()
REFUSAL = "sign_requests needs the deployment's SP key pair, and none is configured"


@pytest.fixture(scope="module")
def keyless(database_url, db):
    """The app on the suite database with no SP key configured."""
    app = create_app(app_overrides(database_url))
    app.extensions["roster.db"].dispose()
    app.extensions["roster.db"] = db
    return app


def _roster(database_url: str, *args: str, **env: str):
    return CliRunner().invoke(cli, list(args), env={"ROSTER_DATABASE__URL": database_url, **env})


def test_the_cli_refuses_sign_requests_without_an_sp_key(database_url, db, tenant, keys):
    """`connection create --sign-requests` and `connection set --sign-requests` stop with one
    line and write nothing; with sso.sp_key_file set both are taken."""
    refused = _roster(database_url, "connection", "create", "--org", "acme", "--name", "s",
                      "--sign-requests")
    assert refused.exit_code == 1
    assert REFUSAL in refused.output
    assert "Traceback" not in refused.output
    assert rows(db, "SELECT count(*) FROM sso_connections")[0][0] == 0
    made = _roster(database_url, "connection", "create", "--org", "acme", "--name", "s")
    conn_id = re.search(r"\(id ([0-9a-f-]{36})\)", made.output).group(1)
    refused = _roster(database_url, "connection", "set", conn_id, "--sign-requests")
    assert refused.exit_code == 1
    assert REFUSAL in refused.output
    assert rows(db, "SELECT sign_requests FROM sso_connections")[0][0] in (False, 0)
    with_key = {"ROSTER_SSO__SP_KEY_FILE": str(keys.sp.key_file),
                "ROSTER_SSO__SP_CERT_FILE": str(keys.sp.cert_file)}
    taken = _roster(database_url, "connection", "set", conn_id, "--sign-requests", **with_key)
    assert taken.exit_code == 0, taken.output
    assert rows(db, "SELECT sign_requests FROM sso_connections")[0][0] in (True, 1)
    taken = _roster(database_url, "connection", "create", "--org", "acme", "--name", "t",
                    "--sign-requests", **with_key)
    assert taken.exit_code == 0, taken.output


def test_the_api_refuses_sign_requests_without_an_sp_key(keyless, web, db, tenant):
    """POST and PATCH with sign_requests true answer 400 naming the field where no SP key
    is configured; the deployment with one (the SSO test app) takes it."""
    admin = make_key(db, "admin", tenant.org)
    base = f"/api/v1/orgs/{tenant.org.id}/connections"
    client = keyless.test_client()
    refused = client.post(base, headers=admin.headers,
                          json={"name": "s", "protocol": "saml", "sign_requests": True})
    assert (refused.status_code, refused.mimetype) == (400, "application/problem+json")
    assert REFUSAL in refused.get_json()["detail"]
    assert rows(db, "SELECT count(*) FROM sso_connections")[0][0] == 0
    made = client.post(base, headers=admin.headers, json={"name": "s", "protocol": "saml"})
    assert made.status_code == 201, made.text
    path = f"{base}/{made.get_json()['id']}"
    refused = client.patch(path, headers=admin.headers, json={"sign_requests": True})
    assert refused.status_code == 400
    assert REFUSAL in refused.get_json()["detail"]
    assert client.patch(path, headers=admin.headers,
                        json={"sign_requests": False}).status_code == 200
    taken = web.patch(path, headers=admin.headers, json={"sign_requests": True})
    assert taken.status_code == 200, taken.text
    assert taken.get_json()["sign_requests"] is True


def test_a_signing_connection_on_a_keyless_server_is_logged_not_failed(keyless, db, tenant,
                                                                       keys, caplog):
    """A connection whose sign_requests was set while a key was configured, served by a
    deployment started without one: metadata and login still work (unsigned, as the
    metadata says), and each logs a warning naming the connection and the setting."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], sign_requests=True)
    client = keyless.test_client()
    with caplog.at_level(logging.WARNING, logger="roster.sso"):
        metadata = client.get(f"/sso/saml/{conn.id}/metadata")
        login = client.get(f"/sso/saml/{conn.id}/login")
    assert metadata.status_code == 200
    assert 'AuthnRequestsSigned="false"' in metadata.text
    assert login.status_code == 303
    assert "Signature" not in parse_qs(urlsplit(login.headers["Location"]).query)
    warnings = [r.getMessage() for r in caplog.records if r.name == "roster.sso"]
    assert len(warnings) == 2
    assert all(conn.id in w and "no SP key is configured (sso.sp_key_file" in w
               for w in warnings)
