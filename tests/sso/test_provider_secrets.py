"""The portal's tokens and the OP's client secret never reach a log line, at any level."""

from __future__ import annotations

import hashlib
import logging

import pytest

from app.observability import JsonFormatter, TextFormatter
from app.sso.keys import load_sp_keys
from app.sso.provider_views import provider_config
from tests.sso.conftest import PORTAL_SECRET
from tests.sso.portal import BASIC, exchange, introspect, login_and_code


@pytest.fixture
def debug_records(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record at DEBUG, as Roster's root handler would see it (create_app removed
    the root handlers, pytest's among them)."""
    logging.getLogger().addHandler(caplog.handler)
    caplog.set_level(logging.DEBUG)
    yield caplog
    logging.getLogger().removeHandler(caplog.handler)


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Each record in both configured formats (logging.format json and text)."""
    json_format, text_format = JsonFormatter(), TextFormatter("%(levelname)s %(name)s "
                                                              "%(message)s")
    return [f(r) for r in caplog.records for f in (json_format.format, text_format.format)]


def test_issued_tokens_are_masked_in_debug_logs(db, tenant, keys, web, debug_records):
    """authlib logs each token response it issues at DEBUG: the access, refresh and ID
    tokens of a code exchange and of a refresh are masked in both log formats."""
    _user, req, code = login_and_code(db, tenant, keys, web)
    first = exchange(web, code, req.verifier).get_json()
    second = web.post("/sso/oidc/token", headers={"Authorization": BASIC}, data={
        "grant_type": "refresh_token", "refresh_token": first["refresh_token"]}).get_json()
    assert introspect(web, second["access_token"])["active"] is True
    issued = [first["access_token"], first["refresh_token"], first["id_token"],
              second["access_token"], second["refresh_token"]]
    lines = _lines(debug_records)
    assert any("Issue token" in line for line in lines)  # the DEBUG line was written
    for token in issued:
        assert not [line for line in lines if token in line]
    # Nor a part long enough to replay: the random part of each, the JWT's signature.
    for token in issued:
        tail = token.rsplit(".", 1)[-1] if token.startswith("eyJ") else token[4:]
        assert not [line for line in lines if tail in line]
    assert not [line for line in lines if PORTAL_SECRET in line]


def test_the_portal_secrets_digest_is_not_logged_with_the_client(db, tenant, keys, web,
                                                                 debug_records):
    """authlib names the client in its DEBUG lines: the unsalted SHA-256 of the portal's
    secret (an operator's choice, guessable offline) is left out of that name."""
    _user, req, code = login_and_code(db, tenant, keys, web)
    assert exchange(web, code, req.verifier).status_code == 200
    lines = _lines(debug_records)
    assert any("PortalClient(client_id='portal'" in line for line in lines)
    digest = hashlib.sha256(PORTAL_SECRET.encode()).hexdigest()
    assert not [line for line in lines if digest in line]


def test_key_material_stays_out_of_reprs(sso_app, keys):
    """The SP's private keys and the portal secret's digest never show in a repr (a log
    line or a traceback naming the settings)."""
    sp = load_sp_keys(sso_app.config["ROSTER"]["sso"])
    private = keys.sp.key_file.read_text().splitlines()[1]
    assert private in sp.current.key_pem
    assert private not in repr(sp)
    config = provider_config(sso_app)
    assert config.client_secret_sha256
    assert config.client_secret_sha256 not in repr(config)
