"""GET /api/v1/audit/verify checks checkpoints with the former signing keys configured
(``signing.former_public_key_files``), as `roster audit verify` does: a key rotation does
not fail the API's check."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app import create_app
from app.audit.signing import key_id_of, public_pem
from app.settings import SettingsError, load_settings
from tests.api.conftest import make_key
from tests.audit.test_verify import attacker
from tests.conftest import app_overrides
from tests.lifecycle.support import make_leaver, roster


def _private_pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def test_checkpoints_of_a_former_key_verify_over_the_api(client, db, dialect, tenant,
                                                         database_url, tmp_path):
    """A checkpoint signed with the key before a rotation: the API's check failed it
    (unknown key id) while the CLI passed with --public-key. With the former key's public
    PEM in signing.former_public_key_files, the API and the CLI (without --public-key)
    pass, naming it in former_key_ids; a tampered key id still fails."""
    make_leaver(db, tenant)
    former = Ed25519PrivateKey.generate()
    roster(database_url, "audit", "checkpoint", ROSTER_SIGNING__PRIVATE_KEY=_private_pem(former))
    admin = make_key(db, "admin", tenant.org).headers
    body = client.get("/api/v1/audit/verify", headers=admin).json
    assert body["ok"] is False
    assert "names signing key" in body["broken"]["reason"]
    assert body["former_key_ids"] == []
    path = tmp_path / "former.pub.pem"
    path.write_text(public_pem(former.public_key()))
    rotated = create_app({**app_overrides(database_url),
                          "signing": {"former_public_key_files": [str(path)]}})
    body = rotated.test_client().get("/api/v1/audit/verify", headers=admin).json
    assert body["ok"] is True, body
    assert body["broken"] is None
    assert body["former_key_ids"] == [key_id_of(former.public_key())]
    output = roster(database_url, "audit", "verify", "--org", "acme",
                    ROSTER_SIGNING__FORMER_PUBLIC_KEY_FILES=str(path)).output
    assert "ok   chain" in output
    with attacker(db, dialect) as conn:  # PostgreSQL refuses it otherwise (0034)
        conn.exec_driver_sql("UPDATE audit_checkpoints SET key_id = '0000000000000000'")
    body = rotated.test_client().get("/api/v1/audit/verify", headers=admin).json
    assert body["ok"] is False
    assert "names signing key '0000000000000000'" in body["broken"]["reason"]


def test_a_former_key_file_that_is_no_ed25519_key_is_refused_at_start(tmp_path):
    """A missing file, or one that is not an Ed25519 PEM, is a configuration error naming
    the setting, at start rather than at the first check."""
    rsa_like = tmp_path / "not-a-key.pem"
    rsa_like.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    for path, words in ((tmp_path / "missing.pem", "cannot read"),
                        (rsa_like, "is not a PEM Ed25519 key")):
        with pytest.raises(SettingsError) as refused:
            load_settings({"signing": {"former_public_key_files": [str(path)]}})
        assert any("signing.former_public_key_files" in p and words in p
                   for p in refused.value.problems), refused.value.problems


def test_the_former_keys_are_read_once_as_the_app_starts(db, tenant, database_url, tmp_path):
    """The API read every former key file on each verify request: a file replaced by one
    that is no key (or removed) after the start turned each check into an error, and each
    request paid for the reads. They are read once as the app starts (after the start-time
    check, which still refuses a bad file): later changes to the files leave the answers
    as they were."""
    make_leaver(db, tenant)
    former = Ed25519PrivateKey.generate()
    roster(database_url, "audit", "checkpoint", ROSTER_SIGNING__PRIVATE_KEY=_private_pem(former))
    path = tmp_path / "former.pub.pem"
    path.write_text(public_pem(former.public_key()))
    rotated = create_app({**app_overrides(database_url),
                          "signing": {"former_public_key_files": [str(path)]}})
    admin = make_key(db, "admin", tenant.org).headers
    first = rotated.test_client().get("/api/v1/audit/verify", headers=admin)
    assert first.status_code == 200
    assert first.json["ok"] is True, first.json
    path.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    again = rotated.test_client().get("/api/v1/audit/verify", headers=admin)
    assert again.status_code == 200, again.get_data(as_text=True)
    assert again.json == first.json
    path.unlink()
    gone = rotated.test_client().get("/api/v1/audit/verify", headers=admin)
    assert gone.status_code == 200, gone.get_data(as_text=True)
    assert gone.json == first.json
    with pytest.raises(SettingsError) as refused:
        create_app({**app_overrides(database_url),
                    "signing": {"former_public_key_files": [str(path)]}})
    assert any("signing.former_public_key_files" in p and "cannot read" in p
               for p in refused.value.problems), refused.value.problems
