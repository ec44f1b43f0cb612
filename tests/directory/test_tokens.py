"""SCIM bearer tokens: hashed at rest, refused when revoked or expired, rotated with overlap."""

from __future__ import annotations

from datetime import timedelta

from app.db import utcnow
from app.directory.tokens import issue_token, revoke_token
from app.models import DirectoryToken
from tests.conftest import OPERATOR, rows

SPC = "/scim/v2/ServiceProviderConfig"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_database_never_holds_the_token_in_clear(tenant, db):
    """No column of any token row contains the plaintext."""
    for row in rows(db, "SELECT * FROM directory_tokens"):
        assert all(tenant.token not in str(value) for value in row)
    for row in rows(db, "SELECT data FROM audit_events"):
        assert tenant.token not in str(row[0])


def test_valid_token_authenticates_and_records_last_use(tenant, client, db):
    """A valid token gets 200 and its last_used_at is set."""
    assert client.get(SPC, headers=tenant.headers).status_code == 200
    assert rows(db, "SELECT last_used_at FROM directory_tokens")[0][0] is not None


def test_missing_or_unknown_token_is_401_with_bearer_challenge(tenant, client):
    """No token or a wrong token: 401, SCIM error body, WWW-Authenticate: Bearer."""
    for headers in ({}, _bearer("rst_wrong"), {"Authorization": "Basic abc"}):
        response = client.get(SPC, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.mimetype == "application/scim+json"
        assert response.get_json()["status"] == "401"


def test_revoked_token_is_refused(tenant, client, db):
    """Revocation takes effect on the next request."""
    with db.transaction() as session:
        token_id = session.query(DirectoryToken.id).scalar()
        revoke_token(session, tenant.directory, token_id, OPERATOR)
    response = client.get(SPC, headers=tenant.headers)
    assert response.status_code == 401
    assert "revoked" in response.get_json()["detail"]


def test_expired_token_is_refused(tenant, client, db):
    """A token past expires_at no longer authenticates."""
    with db.transaction() as session:
        token = session.query(DirectoryToken).one()
        token.expires_at = utcnow() - timedelta(seconds=1)
    assert client.get(SPC, headers=tenant.headers).status_code == 401


def test_rotation_window_old_and_new_both_work_until_old_is_revoked(tenant, client, db):
    """Rotate: both tokens work; revoke the old: only the new one works."""
    with db.transaction() as session:
        old_id = session.query(DirectoryToken.id).scalar()
        _, new_token = issue_token(session, tenant.directory, OPERATOR, days=30, max_valid=2)
    assert client.get(SPC, headers=tenant.headers).status_code == 200
    assert client.get(SPC, headers=_bearer(new_token)).status_code == 200
    with db.transaction() as session:
        revoke_token(session, tenant.directory, old_id, OPERATOR)
    assert client.get(SPC, headers=tenant.headers).status_code == 401
    assert client.get(SPC, headers=_bearer(new_token)).status_code == 200


def test_token_of_disabled_directory_is_refused(tenant, client, db):
    """Disabling a directory stops its tokens."""
    from app.directory.directories import set_directory_status

    with db.transaction() as session:
        directory = session.merge(tenant.directory)
        set_directory_status(session, directory, "disabled", OPERATOR)
    assert client.get(SPC, headers=tenant.headers).status_code == 401


def test_token_changes_are_audited(tenant, db):
    """Issuing a token writes an audit event naming only its prefix."""
    actions = [r[0] for r in rows(db, "SELECT action FROM audit_events ORDER BY seq")]
    assert "directory_token:create" in actions
