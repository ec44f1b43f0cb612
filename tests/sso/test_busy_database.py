"""A sign-in or token request that meets a busy database (lock timeout, deadlock) is a 503
with Retry-After, rolled back whole, so the same request succeeds when retried."""

from __future__ import annotations

from tests.conftest import database_locked, rows
from tests.sso import forge
from tests.sso.conftest import claims_for, post_response, saml_connection, start
from tests.sso.portal import exchange, login_and_code


def test_a_saml_login_on_a_locked_database_is_a_503_page_and_its_retry_succeeds(
        db, tenant, keys, web, sso_app):
    """The JIT login cannot commit: a plain page (not a JSON 500), nothing kept, and the
    browser's re-POST of the same response then signs the user in (its replay record was
    rolled back with the rest)."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    response = forge.b64(forge.signed_response(
        claims_for(conn, in_response_to=start(web, conn)), keys.idp))
    with database_locked(sso_app, db):
        busy = post_response(web, conn, response)
    assert busy.status_code == 503
    assert busy.mimetype == "text/html"
    assert busy.headers["Retry-After"] == "1"
    assert "try again" in busy.text
    assert rows(db, "SELECT count(*) AS n FROM users")[0].n == 0
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 0
    assert post_response(web, conn, response).status_code == 303
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 1


def test_a_code_exchange_on_a_locked_database_is_temporarily_unavailable(
        db, tenant, keys, web, sso_app):
    """The portal's token request: OAuth's JSON error with 503, and the code still works."""
    _user, request, code = login_and_code(db, tenant, keys, web)
    with database_locked(sso_app, db, ("oauth_authorization_codes",)):
        busy = exchange(web, code, request.verifier)
    assert busy.status_code == 503
    assert busy.headers["Retry-After"] == "1"
    assert busy.get_json()["error"] == "temporarily_unavailable"
    assert exchange(web, code, request.verifier).status_code == 200
