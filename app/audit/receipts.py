"""Deprovisioning receipts: the record, signed with the deployment key, verifiable offline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.orm import Session

from app.audit.sealed_records import record_problem
from app.audit.signing import SigningKey, key_id_of, load_public_key, verify_signature
from app.errors import Conflict, InvalidInput, NotFound
from app.ids import shown_id
from app.models.lifecycle import DeprovisionRecord

RECEIPT_TYPE = "roster.deprovision_receipt.v1"


def record_fields(record: DeprovisionRecord) -> dict[str, Any]:
    """Every field of the record as JSON-ready values (not ``audit_id``: the record's
    position in the audit log, which the record feed pages by, is no field of the
    deprovisioning, and receipts signed before it existed did not carry it)."""
    out: dict[str, Any] = {}
    for column in DeprovisionRecord.__table__.columns:
        if column.key == "audit_id":
            continue
        value = getattr(record, column.key)
        out[column.key] = value.isoformat() if isinstance(value, datetime) else value
    return out


def get_record(session: Session, record_id: str,
               organization_id: str | None = None) -> DeprovisionRecord:
    """One deprovisioning record (scoped to an organization when given)."""
    record = session.get(DeprovisionRecord, record_id)
    if record is None or (organization_id and record.organization_id != organization_id):
        raise NotFound(f"no deprovisioning record {shown_id(record_id)}")
    return record


def make_receipt(session: Session, record: DeprovisionRecord,
                 key: SigningKey) -> dict[str, Any]:
    """The signed receipt: {"receipt": {...}, "signature": base64, "algorithm": "Ed25519"}.

    Only for a deprovisioning that was applied: a receipt is proof that access was taken
    away, and a failed attempt took nothing away (Conflict; its record says why). Nor for
    a record its audit events do not vouch for (changed in the database, or added there):
    the deployment key would sign what someone wrote there as Roster's own (Conflict).
    """
    # The record as it is now, and no stamp committing until the events are read: a stamp
    # (a reactivation's restored_at, the commit stamp, a batch) writes the record and its
    # sealing event in one transaction, and read at READ COMMITTED between the record and
    # the events it made an untouched record "fail its seal" (PostgreSQL FOR SHARE: a stamp
    # in flight is waited for, a later one waits; SQLite reads one snapshot anyway).
    session.refresh(record, with_for_update={"read": True})
    if record.outcome != "applied":
        raise Conflict(f"deprovisioning record {record.id} is a failed attempt (nothing was "
                       f"revoked): it has no receipt; see its error")
    problem = record_problem(session, record)
    if problem is not None:
        raise Conflict(f"deprovisioning record {record.id} fails its audit seal ({problem}): "
                       "no receipt is signed for it; run roster audit verify")
    body = {"type": RECEIPT_TYPE, "key_id": key.key_id, "record": record_fields(record)}
    return {"receipt": body, "algorithm": "Ed25519", "signature": key.sign(body),
            "public_key": key.public_pem()}


def verify_receipt(document: dict[str, Any], public_pem: bytes) -> dict[str, Any]:
    """Check a receipt against a trusted public key; return its record or raise InvalidInput.

    The embedded public_key is informational only: trust comes from the key you pass.
    """
    public = load_public_key(public_pem)
    return check_receipt(document, {key_id_of(public): public}, "the given key")[0]


def check_receipt(document: dict[str, Any], keys: dict[str, Ed25519PublicKey],
                  trusted: str) -> tuple[dict[str, Any], str]:
    """Check a receipt against trusted public keys by key id (``verification_keys``: the
    deployment's, the former ones configured); return its record and the id of the key that
    verified it, or raise InvalidInput naming the receipt's key and ``trusted`` (what the
    keys are, for the message). The Ed25519 signature is over the canonical JSON of the
    receipt body (RFC 8032 §5.1.7); the embedded public_key is never trusted."""
    body, signature = document.get("receipt"), document.get("signature")
    if not isinstance(body, dict) or not isinstance(signature, str):
        raise InvalidInput("not a Roster receipt: receipt and signature are required")
    if body.get("type") != RECEIPT_TYPE:
        raise InvalidInput(f"unknown receipt type {body.get('type')!r}")
    key_id = body.get("key_id")
    public = keys.get(key_id) if isinstance(key_id, str) else None
    if public is None:
        raise InvalidInput(f"receipt was signed by key {key_id}, not by {trusted} "
                           f"{', '.join(sorted(keys))}")
    if not verify_signature(public, body, signature):
        raise InvalidInput("signature does not match: the receipt was altered")
    return body["record"], key_id
