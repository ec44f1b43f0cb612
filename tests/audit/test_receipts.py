"""Deprovisioning receipts over /api/v1 and their offline verification with the CLI."""

from __future__ import annotations

import json

from app.lifecycle import Trigger, deprovision_user
from app.models import User
from tests.api.conftest import make_key
from tests.conftest import OPERATOR
from tests.lifecycle.support import make_leaver, roster


def _deprovisioned(db, tenant):
    leaver = make_leaver(db, tenant)
    with db.transaction() as session:
        rec = deprovision_user(session, session.get(User, leaver.user_id), OPERATOR,
                               trigger=Trigger.operator)
    return rec.id


def _receipt(client, db, tenant, record_id):
    auditor = make_key(db, "auditor", tenant.org)
    response = client.get(f"/api/v1/deprovisions/{record_id}/receipt", headers=auditor.headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_receipt_verifies_offline_with_the_public_key(client, db, tenant, database_url,
                                                      tmp_path):
    """A fetched receipt verifies with nothing but the PEM public key."""
    document = _receipt(client, db, tenant, _deprovisioned(db, tenant))
    assert document["algorithm"] == "Ed25519"
    assert document["receipt"]["record"]["trigger"] == "operator"
    (tmp_path / "receipt.json").write_text(json.dumps(document))
    (tmp_path / "key.pem").write_text(roster(database_url, "audit", "public-key").output)
    result = roster(database_url, "audit", "verify-receipt", str(tmp_path / "receipt.json"),
                    "--public-key", str(tmp_path / "key.pem"))
    assert result.output.startswith("valid: deprovisioning")


def test_altered_receipt_is_rejected(client, db, tenant, database_url, tmp_path):
    """Changing any field of the signed record breaks the signature."""
    document = _receipt(client, db, tenant, _deprovisioned(db, tenant))
    document["receipt"]["record"]["tokens_revoked"] = 0
    (tmp_path / "receipt.json").write_text(json.dumps(document))
    result = roster(database_url, "audit", "verify-receipt", str(tmp_path / "receipt.json"),
                    ok=False)
    assert "altered" in result.output


def test_receipt_signed_by_another_key_is_rejected(client, db, tenant, database_url,
                                                   tmp_path):
    """A receipt checked against a different public key names the key mismatch."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from app.audit.signing import public_pem

    document = _receipt(client, db, tenant, _deprovisioned(db, tenant))
    (tmp_path / "receipt.json").write_text(json.dumps(document))
    (tmp_path / "other.pem").write_text(public_pem(Ed25519PrivateKey.generate().public_key()))
    result = roster(database_url, "audit", "verify-receipt", str(tmp_path / "receipt.json"),
                    "--public-key", str(tmp_path / "other.pem"), ok=False)
    assert "signed by key" in result.output


def test_receipts_are_scoped_to_the_organization(client, db, tenant, other_tenant):
    """Another organization's auditor gets 404; the portal role may not read records."""
    record_id = _deprovisioned(db, tenant)
    stranger = make_key(db, "auditor", other_tenant.org)
    portal = make_key(db, "portal", tenant.org)
    assert client.get(f"/api/v1/deprovisions/{record_id}/receipt",
                      headers=stranger.headers).status_code == 404
    assert client.get(f"/api/v1/deprovisions/{record_id}",
                      headers=portal.headers).status_code == 403


def test_deprovision_list_and_report(client, db, tenant, database_url):
    """The API lists the record; the CLI report counts it with latency figures."""
    record_id = _deprovisioned(db, tenant)
    admin = make_key(db, "admin", tenant.org)
    listed = client.get("/api/v1/deprovisions?trigger=operator", headers=admin.headers)
    assert [r["id"] for r in listed.get_json()["items"]] == [record_id]
    report = roster(database_url, "audit", "deprovisions", "--org", "acme", "--since", "1h")
    assert "deprovisionings: 1" in report.output
    assert record_id in report.output


def test_no_receipt_is_signed_for_a_record_changed_in_the_database(client, db, tenant,
                                                                   database_url):
    """A record edited by SQL (its user, or its commit stamp) fails its audit seal: the
    API answers 409 problem JSON and the CLI exits 1, rather than signing the forgery with
    the deployment key; the untouched record's receipt is signed (and after a restore)."""
    import sqlalchemy as sa

    record_id = _deprovisioned(db, tenant)
    _receipt(client, db, tenant, record_id)
    auditor = make_key(db, "auditor", tenant.org)
    for change in ("user_name = 'someone-else'", "latency_ms = 1"):
        with db.engine.begin() as conn:
            original = conn.execute(sa.text("SELECT user_name, latency_ms FROM "
                                            "deprovision_records WHERE id = :r"),
                                    {"r": record_id}).one()
            conn.execute(sa.text(f"UPDATE deprovision_records SET {change} WHERE id = :r"),
                         {"r": record_id})
        response = client.get(f"/api/v1/deprovisions/{record_id}/receipt",
                              headers=auditor.headers)
        assert response.status_code == 409, change
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert "fails its audit seal" in response.json["detail"]
        result = roster(database_url, "audit", "receipt", record_id, ok=False)
        assert "fails its audit seal" in result.output
        with db.engine.begin() as conn:
            conn.execute(sa.text("UPDATE deprovision_records SET user_name = :u, "
                                 "latency_ms = :l WHERE id = :r"),
                         {"u": original.user_name, "l": original.latency_ms, "r": record_id})
        _receipt(client, db, tenant, record_id)


def test_an_unknown_record_id_is_quoted_in_the_404(client, db, tenant):
    """A blank or overlong id is shown quoted and cut, not as trailing spaces (the detail
    read "no deprovisioning record  ") nor echoed whole."""
    auditor = make_key(db, "auditor", tenant.org)
    blank = client.get("/api/v1/deprovisions/%20", headers=auditor.headers)
    assert blank.status_code == 404
    assert blank.get_json()["detail"] == "no deprovisioning record ' '"
    long = client.get("/api/v1/deprovisions/" + "a" * 500, headers=auditor.headers)
    assert long.status_code == 404
    assert long.get_json()["detail"] == "no deprovisioning record '" + "a" * 80 + "'..."
