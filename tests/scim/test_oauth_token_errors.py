"""POST /oauth/token refusing malformed requests as RFC 6749 §5.2 says: ``invalid_request``
for a missing or repeated parameter, ``invalid_client`` for credentials that cannot be read."""

from __future__ import annotations

import base64
import re

import pytest

from tests.conftest import rows
from tests.scim.test_oauth import _client

FORM = "application/x-www-form-urlencoded"


def _post(client, body: str, headers: dict[str, str] | None = None):
    return client.post("/oauth/token", data=body, content_type=FORM, headers=headers or {})


def _assert_refused(response, status: int, error: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.get_json()["error"] == error
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("template", [
    "grant_type=client_credentials&grant_type=client_credentials&client_id={id}"
    "&client_secret={secret}",
    "grant_type=client_credentials&client_id={id}&client_secret={secret}"
    "&client_secret=rss_wrong",
    "grant_type=client_credentials&client_id={id}&client_id=rsc_other"
    "&client_secret={secret}",
    "grant_type=client_credentials&client_id={id}&client_secret={secret}&scope=a&scope=b",
])
def test_a_repeated_parameter_is_invalid_request_and_issues_nothing(client, db, tenant,
                                                                    template):
    """RFC 6749 §3.2: parameters "MUST NOT be included more than once" (§5.2:
    invalid_request). The first value was taken and the rest ignored: a token was issued
    for a request whose second secret was wrong."""
    client_id, secret = _client(db, tenant)
    response = _post(client, template.format(id=client_id, secret=secret))
    _assert_refused(response, 400, "invalid_request")
    assert "more than once" in response.get_json()["error_description"]
    assert rows(db, "SELECT id FROM issued_tokens") == []


@pytest.mark.parametrize("grant", [None, ""])
def test_a_missing_or_empty_grant_type_is_invalid_request(client, db, tenant, grant):
    """RFC 6749 §5.2: a request "missing a required parameter" is invalid_request, and §3.2
    treats a parameter sent without a value as omitted; both were answered
    unsupported_grant_type, as if the client had asked for a grant this server lacks.
    A JSON body (not the form §4.4.2 asks for) has no grant_type either."""
    client_id, secret = _client(db, tenant)
    body = f"client_id={client_id}&client_secret={secret}"
    if grant is not None:
        body += f"&grant_type={grant}"
    response = _post(client, body)
    _assert_refused(response, 400, "invalid_request")
    assert "grant_type" in response.get_json()["error_description"]
    as_json = client.post("/oauth/token", json={"grant_type": "client_credentials",
                                                "client_id": client_id,
                                                "client_secret": secret})
    _assert_refused(as_json, 400, "invalid_request")
    assert rows(db, "SELECT id FROM issued_tokens") == []


@pytest.mark.parametrize("credentials", [b"\xff\xfe:secret", b"rsc_x:\xff", b"\xc3(:\xa0"])
def test_basic_credentials_that_are_not_utf8_are_invalid_client_not_a_500(
        client, db, tenant, credentials):
    """HTTP Basic credentials whose bytes are not UTF-8 (RFC 7617 §2.1) raised inside authlib
    and answered a 500 with a traceback in the log; they authenticate no client: 401
    invalid_client with ``WWW-Authenticate: Basic`` (RFC 6749 §5.2), like a wrong secret."""
    _client(db, tenant)
    header = {"Authorization": "Basic " + base64.b64encode(credentials).decode()}
    response = _post(client, "grant_type=client_credentials", header)
    _assert_refused(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert rows(db, "SELECT id FROM issued_tokens") == []


@pytest.mark.parametrize("basic_secret", ["rss_wrong", "right"])
def test_two_client_authentication_methods_at_once_are_invalid_request(client, db, tenant,
                                                                       basic_secret):
    """RFC 6749 §2.3: a client "MUST NOT use more than one authentication method in each
    request" (§5.2: invalid_request). A wrong HTTP Basic secret beside a right form secret
    was issued a token (authlib fell through to the form)."""
    client_id, secret = _client(db, tenant)
    basic = secret if basic_secret == "right" else basic_secret
    header = base64.b64encode(f"{client_id}:{basic}".encode()).decode()
    response = _post(client, f"grant_type=client_credentials&client_id={client_id}"
                             f"&client_secret={secret}",
                     {"Authorization": f"Basic {header}"})
    _assert_refused(response, 400, "invalid_request")
    assert "RFC 6749 section 2.3" in response.get_json()["error_description"]
    assert rows(db, "SELECT id FROM issued_tokens") == []
    # Basic alone, with client_id in the form as well (no second secret), still works.
    alone = _post(client, f"grant_type=client_credentials&client_id={client_id}",
                  {"Authorization": "Basic " + base64.b64encode(
                      f"{client_id}:{secret}".encode()).decode()})
    assert alone.status_code == 200, alone.get_data(as_text=True)


# RFC 6749 §5.2: error_description holds only %x20-21 / %x23-5B / %x5D-7E.
_DESCRIPTION = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*\Z")


@pytest.mark.parametrize("case", ["repeated", "no_grant", "two_methods", "wrong_secret",
                                  "unknown_path", "scope"])
def test_error_descriptions_keep_to_the_characters_rfc6749_allows(client, db, tenant, case):
    """RFC 6749 §5.2: error_description "MUST NOT include characters outside the set
    %x20-21 / %x23-5B / %x5D-7E". The token endpoint's own descriptions cited "RFC 6749 §..."
    (a non-ASCII character), and a 404 under /oauth/ quoted the path as given."""
    client_id, secret = _client(db, tenant)
    body = f"grant_type=client_credentials&client_id={client_id}&client_secret={secret}"
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    response = {
        "repeated": lambda: _post(client, body + "&grant_type=client_credentials"),
        "no_grant": lambda: _post(client, f"client_id={client_id}&client_secret={secret}"),
        "two_methods": lambda: _post(client, body, {"Authorization": f"Basic {basic}"}),
        "wrong_secret": lambda: _post(client, body.replace(secret, "rss_wrong")),
        "unknown_path": lambda: client.post('/oauth/t\u00f6ken"\\x', data=body,
                                            content_type=FORM),
        "scope": lambda: _post(client, body + "&scope=sc%C3%AFm"),
    }[case]()
    assert response.status_code >= 400
    description = response.get_json()["error_description"]
    assert description
    assert _DESCRIPTION.match(description), description


def _challenge_params(header: str) -> dict[str, str]:
    """The auth-params of one challenge (RFC 9110 §11.2), quoted-strings unescaped."""
    scheme, _, rest = header.partition(" ")
    assert scheme == "Basic", header
    pairs = re.findall(r'([A-Za-z_]+)="((?:[^"\\]|\\.)*)"', rest)
    return {name: re.sub(r"\\(.)", r"\1", value) for name, value in pairs}


@pytest.mark.parametrize("how", ["form", "basic"])
def test_the_401_challenge_says_what_the_body_says(client, db, tenant, how):
    """RFC 6749 §5.2 / RFC 6750 §3: the ``WWW-Authenticate`` challenge of a failed client
    authentication carries the body's ``error`` and ``error_description``, not authlib's
    own wording (a Python list of method names), and names its realm (RFC 7617 §2)."""
    client_id, _secret = _client(db, tenant)
    if how == "form":
        response = _post(client, f"grant_type=client_credentials&client_id={client_id}"
                                 "&client_secret=rss_wrong")
    else:
        basic = base64.b64encode(f"{client_id}:rss_wrong".encode()).decode()
        response = _post(client, "grant_type=client_credentials",
                         {"Authorization": f"Basic {basic}"})
    _assert_refused(response, 401, "invalid_client")
    params = _challenge_params(response.headers["WWW-Authenticate"])
    body = response.get_json()
    assert params == {"realm": "roster-oauth", "error": body["error"],
                      "error_description": body["error_description"]}
