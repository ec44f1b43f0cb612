"""An OIDC refusal's trace keeps what the ID token said, and an ID token is JSON: its
``\\u0000`` and unpaired ``\\ud800`` are stored as U+FFFD, on PostgreSQL too (500s there)."""

from __future__ import annotations

import pytest

from tests.sso.oidc_idp import refused_with
from tests.sso.test_oidc_attacks import _forged
from tests.sso.test_oidc_jose_headers import _signed

BAD = "\ufffd"


@pytest.mark.parametrize(("forge", "reason", "where", "stored"), [
    (lambda idp, c: idp.sign(c, header={"kid": "\x00"}), "unknown_signing_key",
     ("header", "kid"), BAD),
    (lambda idp, c: idp.sign(c, header={"kid": "k\ud800"}), "unknown_signing_key",
     ("header", "kid"), "k" + BAD),
    (lambda idp, c: idp.sign(c, alg="none", header={"alg": "\ud800"}), "alg_not_allowed",
     ("header", "alg"), BAD),
    (lambda idp, c: idp.sign({**c, "iss": "a\x00b"}), "wrong_issuer", ("claims", "iss"),
     f"a{BAD}b"),
    (lambda idp, c: idp.sign({**c, "aud": ["\x00"]}), "wrong_audience", ("claims", "aud"),
     [BAD]),
    (lambda idp, c: idp.sign({**c, "nonce": "\x00n"}), "bad_nonce", ("claims", "nonce"),
     f"{BAD}***"),
    (lambda idp, c: idp.sign({**c, "nonce": "x", "\x00": 1}), "bad_nonce", ("claims", BAD),
     1),
    (lambda idp, c: idp.sign({**c, "email": "\ud800@acme.com"}, alg="none"),
     "alg_not_allowed", ("claims", "email"), f"{BAD}***@acme.com"),
])
def test_a_refused_id_token_holding_nul_or_a_lone_surrogate_is_traced(db, tenant, hostile,
                                                                       web, forge, reason,
                                                                       where, stored):
    """Refused with its own reason, its trace stored (no 500), the text made storable."""
    resp = _forged(db, tenant, hostile, web, lambda claims: forge(hostile, claims))
    payload = refused_with(db, resp, reason)
    part, name = where
    assert payload["id_token"][part][name] == stored


def test_a_nonce_holding_a_lone_surrogate_is_bad_nonce(db, tenant, hostile, web):
    """The nonce was compared as UTF-8 bytes, and an unpaired surrogate cannot be encoded:
    a UnicodeEncodeError, a 500 on the callback, for a validly signed token."""
    resp = _forged(db, tenant, hostile, web, lambda claims: _signed(
        hostile.rsa, {"alg": "RS256", "kid": hostile.rsa.kid},
        {**claims, "nonce": "\ud800" + claims["nonce"]}))
    payload = refused_with(db, resp, "bad_nonce")
    assert payload["id_token"]["claims"]["nonce"] == f"{BAD}***"
