"""Rotating app.secret_key: app.previous_secret_key keeps the OIDC client secrets stored with
the old key, sessions and signed cookies working; `roster connection rekey` moves the secrets
to the new key, after which the previous one can go."""

from __future__ import annotations

import copy

import pytest
from click.testing import CliRunner
from flask import Flask
from itsdangerous import BadSignature

from app import create_app
from app.cli import cli
from app.cli.commands import register
from app.db import utcnow
from tests.conftest import rows
from tests.sso.conftest import provision
from tests.sso.oidc_idp import PORTAL, SECRET_KEY, oidc_connection, roster_path, start_login

NEW_KEY = "n" * 40
register()


def _app(sso_app: Flask, db, **keys: str) -> Flask:
    """The SSO app's settings with other keys (its own pool closed: the suite's is shared)."""
    settings = copy.deepcopy(sso_app.config["ROSTER"])
    settings["app"].update(keys)
    app = create_app(settings)
    app.extensions["roster.db"].dispose()
    app.extensions["roster.db"] = db
    return app


def _login(app: Flask, iam, conn, name: str):
    web = app.test_client()
    return web.get(roster_path(iam.sign_in(start_login(web, conn), name, "correct horse")))


def test_a_rotated_secret_key_keeps_oidc_logins_and_sessions(db, tenant, iam, sso_app,
                                                              database_url):
    """After a rotation the OIDC login through a real IdP still works with the previous key
    given, and without it only once `roster connection rekey` ran; a session signed with the
    old key is still read."""
    stamp = f"{utcnow().timestamp():.6f}".replace(".", "")
    # One user per login, and the refused login on a connection of its own: the test IdP
    # (canaille) answered a later exchange on a client holding a code never redeemed with
    # "Code challenge failed", whatever Roster sent.
    first, second, third = (f"rot{n}{stamp}" for n in range(3))
    for name in (first, second, third):
        provision(db, tenant, f"{name}@acme.com")
        iam.user(name, f"{name}@acme.com", "correct horse")
    conn = oidc_connection(db, tenant, iam)  # its secret encrypted with SECRET_KEY
    refused_conn = oidc_connection(db, tenant, iam)
    [before] = rows(db, "SELECT oidc_client_secret_enc FROM sso_connections WHERE id = :c",
                    c=conn.id)

    rotated = _app(sso_app, db, secret_key=NEW_KEY, previous_secret_key=SECRET_KEY)
    answer = _login(rotated, iam, conn, first)
    assert answer.status_code == 303, answer.text
    assert answer.headers["Location"] == PORTAL + "home"
    signed = sso_app.session_interface.get_signing_serializer(sso_app).dumps({"k": "v"})
    assert rotated.session_interface.get_signing_serializer(rotated).loads(signed) == {
        "k": "v"}

    only_new = _app(sso_app, db, secret_key=NEW_KEY)
    assert _login(only_new, iam, refused_conn, second).status_code == 403
    assert [r.reason for r in rows(db, "SELECT reason FROM sso_login_traces")] == [
        "misconfigured"]
    with pytest.raises(BadSignature):
        only_new.session_interface.get_signing_serializer(only_new).loads(signed)

    env = {"ROSTER_DATABASE__URL": database_url, "ROSTER_APP__ENV": "test",
           "ROSTER_APP__SECRET_KEY": NEW_KEY, "ROSTER_APP__PREVIOUS_SECRET_KEY": SECRET_KEY}
    result = CliRunner().invoke(cli, ["connection", "rekey"], env=env)
    assert result.exit_code == 0, result.output
    assert "of 2 connection(s)" in result.output
    [after] = rows(db, "SELECT oidc_client_secret_enc FROM sso_connections WHERE id = :c",
                   c=conn.id)
    assert after.oidc_client_secret_enc != before.oidc_client_secret_enc
    assert iam.client(conn.id)[1] not in after.oidc_client_secret_enc
    again = _login(only_new, iam, conn, third)
    assert again.status_code == 303, again.text
    assert sorted(r.subject_id for r in rows(
        db, "SELECT subject_id FROM audit_events WHERE action = 'sso:connection:rekey'")) == \
        sorted([conn.id, refused_conn.id])

    # A key neither of which opens the secret: named, exit 1, nothing changed.
    env.update(ROSTER_APP__SECRET_KEY="x" * 40, ROSTER_APP__PREVIOUS_SECRET_KEY="y" * 40)
    refused = CliRunner().invoke(cli, ["connection", "rekey"], env=env)
    assert refused.exit_code == 1
    assert conn.id in refused.output
    assert refused_conn.id in refused.output
    assert rows(db, "SELECT oidc_client_secret_enc FROM sso_connections WHERE id = :c",
                c=conn.id) == [after]
