"""OAuth 2.0 client credentials for IdPs (RFC 6749 §4.4): POST /oauth/token and SCIM use."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.db import utcnow
from app.directory.oauth_clients import create_client, revoke_client, rotate_secret
from app.directory.tokens import hash_token
from app.models import Directory
from app.scim.recorder import flush
from tests.conftest import OPERATOR, rows

SPC = "/scim/v2/ServiceProviderConfig"


def _client(db, tenant):
    with db.transaction() as session:
        client, secret = create_client(session, session.get(Directory, tenant.directory.id),
                                       OPERATOR)
    return client.client_id, secret


def _token(client, client_id, secret):
    return client.post("/oauth/token", data={"grant_type": "client_credentials",
                                             "client_id": client_id, "client_secret": secret})


def test_token_issued_for_form_credentials_and_stored_hashed(client, db, tenant):
    """The Entra style (secret in the form) gets a bearer token of the configured lifetime."""
    client_id, secret = _client(db, tenant)
    response = _token(client, client_id, secret)
    assert response.status_code == 200
    body = response.get_json()
    assert body["token_type"].lower() == "bearer"
    assert body["expires_in"] == 60 * 60
    assert response.headers["Cache-Control"] == "no-store"
    stored = rows(db, "SELECT directory_id, client_id, token_type, token_hash, expires_at "
                      "FROM issued_tokens")
    assert len(stored) == 1
    assert stored[0].directory_id == tenant.directory.id
    assert stored[0].token_type == "access"
    assert stored[0].token_hash == hash_token(body["access_token"])
    assert body["access_token"] not in str(rows(db, "SELECT * FROM issued_tokens"))
    secrets = rows(db, "SELECT secret_hash FROM scim_oauth_clients")
    assert secrets[0].secret_hash == hash_token(secret)


def test_token_issued_for_basic_credentials(client, db, tenant):
    """HTTP Basic client authentication (RFC 6749 §2.3.1) works as well."""
    client_id, secret = _client(db, tenant)
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                           headers={"Authorization": f"Basic {basic}"})
    assert response.status_code == 200, response.get_json()


def test_wrong_secret_is_401_with_rfc6749_error_json(client, db, tenant):
    """A wrong secret gets 401 invalid_client (RFC 6749 §5.2) and no token row."""
    client_id, _secret = _client(db, tenant)
    response = _token(client, client_id, "rss_wrong")
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_client"
    # Said in words (authlib's own description was a Python list of method names).
    assert response.get_json()["error_description"].startswith(
        "client authentication failed: unknown client or wrong secret")
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert rows(db, "SELECT id FROM issued_tokens") == []


def test_unknown_client_and_bad_grant_type_are_refused(client, db, tenant):
    """An unknown client id gets the very answer of a wrong secret (401 invalid_client, in
    the form or the Basic header), so client ids cannot be probed; another grant type is
    unsupported_grant_type."""
    client_id, secret = _client(db, tenant)
    wrong = _token(client, client_id, "rss_wrong")
    unknown = _token(client, "rsc_nobody", secret)
    assert (unknown.status_code, unknown.get_json()) == (401, wrong.get_json())
    for who in (f"{client_id}:rss_wrong", f"rsc_nobody:{secret}"):
        basic = base64.b64encode(who.encode()).decode()
        response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                               headers={"Authorization": f"Basic {basic}"})
        assert (response.status_code, response.get_json()) == (401, wrong.get_json())
    response = client.post("/oauth/token", data={"grant_type": "password",
                                                 "client_id": client_id,
                                                 "client_secret": secret})
    assert response.status_code == 400
    assert response.get_json()["error"] == "unsupported_grant_type"


def test_a_client_id_holding_nul_is_invalid_client_not_a_500(client, db, tenant):
    """In the form or the Basic header: PostgreSQL could not even look it up (500 before)."""
    _client_id, secret = _client(db, tenant)
    response = _token(client, "rsc_\x00", secret)
    assert response.status_code == 401  # as for any unknown client
    assert response.get_json()["error"] == "invalid_client"
    basic = base64.b64encode(b"rsc_\x00x:" + secret.encode()).decode()
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                           headers={"Authorization": f"Basic {basic}"})
    assert response.status_code == 401
    assert rows(db, "SELECT id FROM issued_tokens") == []


@pytest.mark.parametrize("minutes", [90, 360])
def test_lifetime_follows_the_setting(database_url, tenant, db, minutes):
    """oauth.access_token_minutes sets expires_in and the stored expiry."""
    from app import create_app
    from tests.conftest import app_overrides

    other = create_app({**app_overrides(database_url), "oauth": {"access_token_minutes": minutes}})
    client_id, secret = _client(db, tenant)
    body = _token(other.test_client(), client_id, secret).get_json()
    assert body["expires_in"] == minutes * 60
    other.extensions["roster.db"].dispose()


def test_lifetime_outside_60_to_360_minutes_is_a_configuration_error():
    """Entra requires 60-360 minutes; anything else stops the process at start."""
    from app.settings import SettingsError, load_settings

    for minutes in (59, 361):
        with pytest.raises(SettingsError) as info:
            load_settings({"oauth": {"access_token_minutes": minutes}}, environ={})
        assert "oauth.access_token_minutes" in str(info.value)


def test_scim_request_with_the_access_token_works(client, db, tenant):
    """A SCIM request with the OAuth access token is authenticated as its directory."""
    client_id, secret = _client(db, tenant)
    token = _token(client, client_id, secret).get_json()["access_token"]
    response = client.get(SPC, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    flush(client.application)
    recorded = rows(db, "SELECT directory_id FROM scim_requests")
    assert [r.directory_id for r in recorded] == [tenant.directory.id]


def test_expired_access_token_is_refused(client, db, tenant):
    """An access token past its expiry gets a SCIM 401."""
    client_id, secret = _client(db, tenant)
    token = _token(client, client_id, secret).get_json()["access_token"]
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE issued_tokens SET expires_at = :t"),
                     {"t": utcnow() - timedelta(seconds=1)})
    response = client.get(SPC, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.get_json()["status"] == "401"
    assert "Bearer" in response.headers["WWW-Authenticate"]


def test_revoked_client_is_refused_and_its_tokens_stop_working(client, db, tenant):
    """After revoke, the client gets no new token and its issued tokens are refused."""
    client_id, secret = _client(db, tenant)
    token = _token(client, client_id, secret).get_json()["access_token"]
    with db.transaction() as session:
        revoke_client(session, session.get(Directory, tenant.directory.id), OPERATOR)
    assert _token(client, client_id, secret).status_code in (400, 401)
    assert client.get(SPC, headers={"Authorization": f"Bearer {token}"}).status_code == 401
    actions = [r.action for r in rows(db, "SELECT action FROM audit_events ORDER BY seq")]
    assert actions[-2:] == ["oauth_client:create", "oauth_client:revoke"]


def test_rotated_secret_replaces_the_old_one(client, db, tenant):
    """After rotate only the new secret gets tokens."""
    client_id, old = _client(db, tenant)
    with db.transaction() as session:
        _client_row, new = rotate_secret(session, session.get(Directory, tenant.directory.id),
                                         OPERATOR)
    assert _token(client, client_id, old).status_code == 401
    assert _token(client, client_id, new).status_code == 200


def test_token_of_directory_a_cannot_touch_directory_b(client, db, tenant, other_tenant):
    """An access token acts only for its own directory: B's users are 404 to it."""
    client_id, secret = _client(db, tenant)
    token = _token(client, client_id, secret).get_json()["access_token"]
    created = client.post("/scim/v2/Users", headers=other_tenant.headers, json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "b@globex.com"})
    assert created.status_code == 201
    user_id = created.get_json()["id"]
    as_a = {"Authorization": f"Bearer {token}"}
    assert client.get(f"/scim/v2/Users/{user_id}", headers=as_a).status_code == 404
    assert client.delete(f"/scim/v2/Users/{user_id}", headers=as_a).status_code == 404
    listed = client.get("/scim/v2/Users", headers=as_a).get_json()
    assert listed["totalResults"] == 0


def test_disabled_directory_gets_no_token_and_its_tokens_stop(client, db, tenant):
    """A disabled directory's client is refused and its access tokens no longer work."""
    from app.directory.directories import set_directory_status

    client_id, secret = _client(db, tenant)
    token = _token(client, client_id, secret).get_json()["access_token"]
    with db.transaction() as session:
        set_directory_status(session, session.get(Directory, tenant.directory.id), "disabled",
                             OPERATOR)
    assert _token(client, client_id, secret).status_code in (400, 401)
    assert client.get(SPC, headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_changes_made_with_an_access_token_name_the_oauth_client(client, db, tenant):
    """Audit rows and the deprovisioning record say which OAuth client acted (issue 7)."""
    client_id, secret = _client(db, tenant)
    token = _token(client, client_id, secret).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    created = client.post("/scim/v2/Users", headers=headers, json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "o@acme.test"})
    assert created.status_code == 201, created.get_json()
    user_id = created.get_json()["id"]
    patched = client.patch(f"/scim/v2/Users/{user_id}", headers=headers, json={
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": False}}]})
    assert patched.status_code == 200, patched.get_json()
    actors = {(r.actor_type, r.actor_id) for r in rows(
        db, "SELECT actor_type, actor_id FROM audit_events WHERE subject_id = :u", u=user_id)}
    assert actors == {("oauth_client", client_id)}
    [record] = rows(db, "SELECT actor_type, actor_id FROM deprovision_records "
                        "WHERE user_id = :u", u=user_id)
    assert (record.actor_type, record.actor_id) == ("oauth_client", client_id)


def test_token_request_before_migrations_is_a_retryable_503(fresh_url):
    """An Entra client-credentials request to a database not upgraded yet (or away) is a
    503 temporarily_unavailable with Retry-After, as SCIM answers; it was a 500."""
    from app import create_app
    from tests.conftest import app_overrides

    client = create_app(app_overrides(fresh_url)).test_client()
    response = client.post("/oauth/token", data={"grant_type": "client_credentials",
                                                 "client_id": "roc_x", "client_secret": "y"})
    assert response.status_code == 503
    assert response.get_json()["error"] == "temporarily_unavailable"
    assert response.headers["Retry-After"] == "30"
    assert response.headers["Cache-Control"] == "no-store"


def test_sign_in_pages_before_migrations_are_a_retryable_503(fresh_url):
    """Home-realm discovery on a database not upgraded yet: a 503 page with Retry-After,
    as SCIM and the API answer; it was a 500."""
    from app import create_app
    from tests.conftest import app_overrides

    client = create_app(app_overrides(fresh_url)).test_client()
    response = client.post("/sso/discover", data={"email": "ann@acme.example"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    assert response.mimetype == "text/html"
