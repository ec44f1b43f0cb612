"""A customer's OIDC IdP answering oddly (JSON nested thousands deep, numbers where arrays
belong, a token response of megabytes) gets the sign-in refusal page with its trace, never a
500, and nothing it sends past the size bound is taken in.

The IdP is the loopback one of tests/sso/oidc_idp.py, each answer written as it is sent."""

from __future__ import annotations

import base64
import gc
import sys
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from tests.conftest import rows
from tests.sso.conftest import provision
from tests.sso.oidc_idp import (
    PORTAL,
    follow_to_roster,
    oidc_connection,
    refused_with,
    roster_path,
    start_login,
)

DISCOVERY = "/.well-known/openid-configuration"
DEEP = b"[" * 100_000 + b"]" * 100_000  # 200 KB, within the size bound
JSON = "application/json"


@pytest.fixture(autouse=True)
def _unraisable_shown_safely() -> Iterator[None]:
    """An exception ignored while the thousands-deep JSON is freed names an object whose
    ``repr`` recurses too deep: pytest's unraisable hook then failed on its own, and that
    failure failed the test now and then. Such an object is handed on as a short text, so
    pytest still reports the exception; anything else is handed on as it came."""
    pytest_hook = sys.unraisablehook

    def hook(args: object) -> None:
        try:
            repr(args.object)  # type: ignore[attr-defined]
        except RecursionError:
            args = SimpleNamespace(
                exc_type=args.exc_type, exc_value=args.exc_value,  # type: ignore[attr-defined]
                exc_traceback=args.exc_traceback, err_msg=args.err_msg,  # type: ignore[attr-defined]
                object=f"<{type(args.object).__name__} nested too deep to show>")  # type: ignore[attr-defined]
        pytest_hook(args)  # type: ignore[arg-type]

    sys.unraisablehook = hook
    try:
        yield
        gc.collect()
    finally:
        sys.unraisablehook = pytest_hook


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _callback(web, hostile, conn) -> str:
    return roster_path(follow_to_roster(start_login(web, conn)))


def test_a_discovery_document_nested_thousands_deep_is_a_refusal(db, tenant, hostile, web):
    """Before: json.loads raised RecursionError, not ValueError: a 500."""
    conn = oidc_connection(db, tenant, hostile)
    hostile.raw = {DISCOVERY: (200, JSON, DEEP)}
    refused_with(db, web.get(f"/sso/oidc/{conn.id}/login"), "discovery_failed")
    assert rows(db, "SELECT detail FROM sso_login_traces")[0].detail == \
        f"{hostile.discovery_url} is not JSON"


@pytest.mark.parametrize(("path", "answer", "reason"), [
    ("/jwks", (200, JSON, DEEP), "discovery_failed"),
    ("/jwks", (200, JSON, b'{"keys": [' + DEEP + b"]}"), "discovery_failed"),
    ("/token", (200, JSON, DEEP), "idp_unreachable"),
    ("/token", (400, JSON, DEEP), "idp_unreachable"),
    ("/token", (200, JSON, b'{"access_token": "a", "token_type": "Bearer", "id_token": '
                           b'"a.b.c", "expires_in": 1e400}'), "idp_unreachable"),
    ("/token", (200, JSON, b'{"access_token": "a", "token_type": "Bearer", "id_token": '
                           b'"a.b.c", "expires_in": [1]}'), "idp_unreachable"),
], ids=["jwks-deep", "jwks-keys-deep", "token-deep", "token-400-deep", "expires-in-infinite",
        "expires-in-array"])
def test_an_odd_jwks_or_token_response_is_a_refusal(db, tenant, hostile, web, path, answer,
                                                   reason):
    """JSON nested thousands deep (RecursionError), an ``expires_in`` authlib cannot make
    an integer of (OverflowError, TypeError): the callback is refused, the IdP's doing
    (not counted against the client). Before: each a 500."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    callback = _callback(web, hostile, conn)
    hostile.raw = {path: answer}
    refused_with(db, web.get(callback), reason)


def test_an_id_token_nested_thousands_deep_is_malformed(db, tenant, hostile, web):
    """The ID token's header is JSON nested thousands deep: malformed_id_token. Before: a
    500 (its header is read before any key is chosen)."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    hostile.token_for = lambda claims: (f"{_b64(b'[' * 50_000 + b']' * 50_000)}."
                                        f"{_b64(b'{}')}.c2ln")
    refused_with(db, web.get(_callback(web, hostile, conn)), "malformed_id_token")


def test_a_token_response_of_megabytes_is_not_taken_in(db, tenant, hostile, web):
    """A token response of 5 MB around a valid ID token: refused (idp_unreachable, "larger
    than 512000 bytes"), the rest never read. Before: read whole (only the deadline bounded
    it; discovery and JWKS were bounded), and the login succeeded."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    hostile.token_extra = {"padding": "x" * 5_000_000}
    refused_with(db, web.get(_callback(web, hostile, conn)), "idp_unreachable")
    assert rows(db, "SELECT detail FROM sso_login_traces")[0].detail == \
        "token endpoint: the answer is larger than 512000 bytes"


@pytest.mark.parametrize("methods", [5, {"client_secret_basic": True}, "client_secret_basic"])
def test_auth_methods_that_are_no_array_do_not_break_logins(db, tenant, hostile, web,
                                                            methods):
    """``token_endpoint_auth_methods_supported`` is no array of strings (RFC 8414 §2): a
    number or an object is read as absent, one string as itself; the login goes on with
    client_secret_basic. Before: a number made a 500 of every login, and a string was read
    letter by letter (client_secret_post chosen)."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    hostile.metadata = {"token_endpoint_auth_methods_supported": methods}
    resp = web.get(_callback(web, hostile, conn))
    assert resp.status_code == 303, resp.text
    assert resp.headers["Location"] == PORTAL + "home"
    assert "client_secret" not in hostile.token_requests[-1]  # basic: in the header


def test_a_discovery_field_of_another_type_is_named(db, tenant, hostile, web):
    """An ``issuer`` that is a number: the trace names it. Before: "discovery document
    lacks " and nothing after it."""
    conn = oidc_connection(db, tenant, hostile)
    hostile.metadata = {"issuer": 5}
    refused_with(db, web.get(f"/sso/oidc/{conn.id}/login"), "discovery_failed")
    assert rows(db, "SELECT detail FROM sso_login_traces")[0].detail == \
        "discovery document lacks issuer"


@pytest.mark.parametrize("claims", [{"exp": float("nan")}, {"exp": float("inf")},
                                    {"exp": True}, {"iat": float("nan")},
                                    {"nbf": float("nan")}, {"score": float("-inf")}],
                         ids=["exp-nan", "exp-infinity", "exp-true", "iat-nan", "nbf-nan",
                              "other-claim-infinity"])
def test_a_claim_that_is_no_finite_number_is_malformed(db, tenant, hostile, web, claims):
    """An ID token (signed by the IdP) holding NaN or Infinity (not JSON, RFC 8259 §6, but
    Python reads them) in any claim, or an exp of ``true``: malformed_id_token. Before: NaN
    and Infinity passed every time comparison (a token that never expires; the login
    succeeded), ``true`` was read as 1 (token_expired), and on PostgreSQL the trace of a
    refusal holding such a claim could not be stored (a 500)."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    hostile.token_for = lambda honest: hostile.sign({**honest, **claims})
    refused_with(db, web.get(_callback(web, hostile, conn)), "malformed_id_token")
