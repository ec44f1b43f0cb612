"""JOSE header members of an ID token that joserfc checks (RFC 7515 §4.1.11 ``crit``):
a validly signed token whose header is odd is a traced refusal, never a 500."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from tests.sso.oidc_idp import refused_with
from tests.sso.test_oidc_attacks import _forged


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed(key, header: dict, claims: dict) -> str:
    """An RS256 JWS over any header (joserfc refuses to write these)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = key.private_key.sign(signing_input.encode(), padding.PKCS1v15(),
                                     hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


@pytest.mark.parametrize(("crit", "reason"), [
    ([1], "malformed_id_token"), ([None], "malformed_id_token"),
    ([["exp"]], "malformed_id_token"), ([{"a": 1}], "malformed_id_token"),
    (7, "malformed_id_token"), ("foo", "malformed_id_token"), ([], "malformed_id_token"),
    (["foo"], "bad_signature"),
])
def test_an_id_token_with_a_crit_header_roster_cannot_honour_is_refused(db, tenant, hostile,
                                                                         web, crit, reason):
    """RFC 7515 §4.1.11: ``crit`` names extensions the recipient must understand, as a
    non-empty array of strings; one Roster does not understand fails verification. A
    member that is no string (``[1]``), or a number, made joserfc raise a TypeError: a 500
    on the callback."""
    resp = _forged(db, tenant, hostile, web, lambda claims: _signed(
        hostile.rsa, {"alg": "RS256", "kid": hostile.rsa.kid, "crit": crit, "foo": 1},
        claims))
    payload = refused_with(db, resp, reason)
    assert payload["id_token"]["header"]["crit"] == crit


def test_the_same_header_without_crit_signs_in(db, tenant, hostile, web):
    """Control case: the hand-made signature is a valid one."""
    resp = _forged(db, tenant, hostile, web, lambda claims: _signed(
        hostile.rsa, {"alg": "RS256", "kid": hostile.rsa.kid}, claims))
    assert resp.status_code == 303, resp.text
