"""Anonymous refusals count against the client's address (ratelimit.failed_auth): past the
limit a sign-in refused before any IdP vouched for a subject gets a 429 page and writes no
trace. Before, every GET of /sso/saml/<any id>/login and every forged SAMLResponse wrote a
trace row (on SQLite under the single write lock), as fast as a client could send them."""

from __future__ import annotations

import copy

from flask import Flask

from app import create_app
from app.db import Database, new_id
from tests.conftest import rows
from tests.sso import forge
from tests.sso.conftest import claims_for, post_response, provision, saml_connection, start

IP = {"REMOTE_ADDR": "203.0.113.41"}
OTHER_IP = {"REMOTE_ADDR": "198.51.100.9"}


def _limited(sso_app: Flask, db: Database, limit: str = "3/minute") -> Flask:
    """The SSO app with a small failed-authentication limit, on the suite's database."""
    overrides = copy.deepcopy(sso_app.config["ROSTER"])
    overrides["ratelimit"] = {**overrides["ratelimit"], "failed_auth": limit}
    app = create_app(overrides)
    app.extensions["roster.db"].dispose()
    app.extensions["roster.db"] = db
    return app


def _traces(db: Database) -> int:
    return rows(db, "SELECT count(*) AS n FROM sso_login_traces")[0].n


def _block(client, db: Database) -> None:
    """Three refusals at unknown connection ids: each traced, then the address blocked."""
    before = _traces(db)
    for protocol in ("saml", "oidc", "saml"):
        resp = client.get(f"/sso/{protocol}/{new_id()}/login", environ_base=IP)
        assert resp.status_code == 403, resp.text
        assert "correlation-id" in resp.text
    assert _traces(db) == before + 3


def test_unknown_connection_ids_stop_writing_traces_past_the_limit(db, sso_app):
    """The fourth refusal from the address is a 429 page with Retry-After and no trace;
    another address is still refused and traced as before."""
    client = _limited(sso_app, db).test_client()
    _block(client, db)
    traced = _traces(db)
    for protocol in ("saml", "oidc"):
        resp = client.get(f"/sso/{protocol}/{new_id()}/login", environ_base=IP)
        assert resp.status_code == 429, resp.text
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        assert "Too many sign-in attempts" in resp.text
        assert "correlation-id" not in resp.text
        assert resp.headers["Cache-Control"] == "no-store"
    assert _traces(db) == traced
    resp = client.get(f"/sso/saml/{new_id()}/login", environ_base=OTHER_IP)
    assert resp.status_code == 403
    assert _traces(db) == traced + 1


def test_forged_responses_at_a_real_acs_are_counted_too(db, tenant, keys, sso_app):
    """A SAMLResponse signed by a key the connection does not trust, posted anonymously to
    an enabled connection's ACS: traced until the limit, then 429 without a trace."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    client = _limited(sso_app, db).test_client()
    statuses = []
    for _ in range(5):
        forged = forge.b64(forge.signed_response(claims_for(conn), keys.rogue))
        statuses.append(client.post(f"/sso/saml/{conn.id}/acs",
                                    data={"SAMLResponse": forged}, environ_base=IP).status_code)
    assert statuses == [403, 403, 403, 429, 429]
    assert _traces(db) == 3


def test_a_blocked_address_still_signs_in_and_still_traces_vouched_refusals(
        db, tenant, keys, sso_app):
    """The block bounds only what anonymous clients can write: a valid assertion of a
    provisioned user from the blocked address signs in, and one of a user the directory
    does not know is refused, traced and found under its correlation id as always."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    app = _limited(sso_app, db)
    client = app.test_client()
    client.environ_base.update(IP)
    _block(client, db)
    traced = _traces(db)
    unknown = forge.signed_response(claims_for(conn, in_response_to=start(client, conn)),
                                    keys.idp)
    resp = post_response(client, conn, forge.b64(unknown))
    assert resp.status_code == 403, resp.text
    assert "correlation-id" in resp.text
    assert [r.reason for r in rows(db, "SELECT reason FROM sso_login_traces "
                                       "ORDER BY created_at")][-1] == "unknown_user"
    assert _traces(db) == traced + 1
    provision(db, tenant)
    signed = forge.signed_response(claims_for(conn, in_response_to=start(client, conn)),
                                   keys.idp)
    resp = post_response(client, conn, forge.b64(signed))
    assert resp.status_code == 303, resp.text
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 1
