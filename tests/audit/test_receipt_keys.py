"""`roster audit verify-receipt` after a key rotation: a receipt signed with a former key
verifies with the former keys configured (``signing.former_public_key_files``), as the
chain's checkpoints do, and the answer names the key that verified it."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app import create_app
from app.audit.signing import key_id_of, public_pem
from app.lifecycle import Trigger, deprovision_user
from app.models import User
from tests.api.conftest import make_key
from tests.conftest import OPERATOR, app_overrides
from tests.lifecycle.support import make_leaver, roster


def _private_pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _receipt_signed_with(db, tenant, database_url, key: Ed25519PrivateKey,
                         name: str = "leaver") -> dict:
    """A receipt fetched over the API of a deployment whose signing key is ``key``."""
    leaver = make_leaver(db, tenant, name)
    with db.transaction() as session:
        record = deprovision_user(session, session.get(User, leaver.user_id), OPERATOR,
                                  trigger=Trigger.operator)
    before = create_app({**app_overrides(database_url),
                         "signing": {"private_key": _private_pem(key)}})
    auditor = make_key(db, "auditor", tenant.org).headers
    response = before.test_client().get(f"/api/v1/deprovisions/{record.id}/receipt",
                                        headers=auditor)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json


def test_a_receipt_signed_before_a_rotation_verifies_with_the_former_keys(
        db, tenant, database_url, tmp_path):
    """Without the former key configured the receipt is refused, naming its key; with it
    in signing.former_public_key_files it verifies without --public-key, and the output
    names the former key that verified it. An altered one still fails."""
    former = Ed25519PrivateKey.generate()
    document = _receipt_signed_with(db, tenant, database_url, former)
    receipt = tmp_path / "receipt.json"
    receipt.write_text(json.dumps(document))
    former_id = key_id_of(former.public_key())
    refused = roster(database_url, "audit", "verify-receipt", str(receipt), ok=False)
    assert f"signed by key {former_id}" in refused.output
    assert "signing.former_public_key_files" in refused.output
    path = tmp_path / "former.pub.pem"
    path.write_text(public_pem(former.public_key()))
    # A second former key listed first: the receipt's key id picks the right one.
    other = tmp_path / "other.pub.pem"
    other.write_text(public_pem(Ed25519PrivateKey.generate().public_key()))
    files = f"{other},{path}"
    result = roster(database_url, "audit", "verify-receipt", str(receipt),
                    ROSTER_SIGNING__FORMER_PUBLIC_KEY_FILES=files)
    assert result.output.startswith("valid: deprovisioning")
    assert f"signed by key {former_id}, a former key" in result.output
    document["receipt"]["record"]["tokens_revoked"] = 0
    receipt.write_text(json.dumps(document))
    altered = roster(database_url, "audit", "verify-receipt", str(receipt), ok=False,
                     ROSTER_SIGNING__FORMER_PUBLIC_KEY_FILES=files)
    assert "altered" in altered.output


def test_the_current_key_and_a_given_key_are_named(client, db, tenant, database_url,
                                                   tmp_path):
    """A receipt of the current key names it as this deployment's key; with --public-key
    only the given key is trusted (the former keys configured are not used)."""
    current = roster(database_url, "audit", "public-key").output
    current_id = key_id_of(serialization.load_pem_public_key(current.encode()))
    leaver = make_leaver(db, tenant)
    with db.transaction() as session:
        record = deprovision_user(session, session.get(User, leaver.user_id), OPERATOR,
                                  trigger=Trigger.operator)
    auditor = make_key(db, "auditor", tenant.org).headers
    receipt = tmp_path / "receipt.json"
    receipt.write_text(json.dumps(client.get(f"/api/v1/deprovisions/{record.id}/receipt",
                                             headers=auditor).json))
    result = roster(database_url, "audit", "verify-receipt", str(receipt))
    assert f"signed by key {current_id}, this deployment's key" in result.output
    given = tmp_path / "key.pem"
    given.write_text(current)
    result = roster(database_url, "audit", "verify-receipt", str(receipt),
                    "--public-key", str(given))
    assert f"signed by key {current_id}, the given key" in result.output
    former = Ed25519PrivateKey.generate()
    signed_before = _receipt_signed_with(db, tenant, database_url, former, "second")
    receipt.write_text(json.dumps(signed_before))
    path = tmp_path / "former.pub.pem"
    path.write_text(public_pem(former.public_key()))
    refused = roster(database_url, "audit", "verify-receipt", str(receipt), "--public-key",
                     str(given), ok=False, ROSTER_SIGNING__FORMER_PUBLIC_KEY_FILES=str(path))
    assert "not by the given key" in refused.output
