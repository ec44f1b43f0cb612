"""SSO fixtures: test keys, an app configured for SSO, SAML connections and users."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from app import create_app
from app.db import Database, new_id, utcnow
from app.models import Organization, User
from app.models.directory import UserStatus
from app.models.sso import ConnectionDomain, SsoConnection
from app.sso.connection_metadata import apply_idp_metadata
from app.sso.connections import create_connection
from tests.conftest import OPERATOR, Tenant, app_overrides, roster_cli
from tests.sso.forge import IDP_ENTITY, IDP_SSO, Claims
from tests.sso.keys import TestKey, make_key
from tests.sso.oidc_idp import hostile, hostile_server, iam  # noqa: F401  OIDC RP IdPs
from tests.sso.simplesamlphp import SimpleSamlIdp, running_idp

PORTAL = "https://portal.test/"
PORTAL_CALLBACK = "https://portal.test/callback"
PORTAL_LOGGED_OUT = "https://portal.test/logged-out"
PORTAL_CLIENT, PORTAL_SECRET = "portal", "portal-secret-for-tests"


@dataclass(frozen=True)
class Keys:
    """IdP signing keys (one configured, one rogue) and the SP's current and next pairs."""

    idp: TestKey
    idp_second: TestKey
    rogue: TestKey
    sp: TestKey
    sp_next: TestKey
    op: TestKey
    op_old: TestKey


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """Key pairs made once per worker."""
    d: Path = tmp_path_factory.mktemp("sso-keys")
    names = ("idp", "idp2", "rogue", "sp", "sp-next", "op", "op-old")
    return Keys(*(make_key(d, n) for n in names))


def sso_overrides(database_url: str, keys: Keys) -> dict[str, dict[str, object]]:
    """The settings of :func:`sso_app`: SP key rollover pair, portal allow-list, a secret
    key, the portal as the OIDC provider's client."""
    overrides = app_overrides(database_url)
    overrides["app"] = {**overrides["app"], "secret_key": "t" * 40}
    overrides["sso"] = {"sp_key_file": str(keys.sp.key_file),
                        "sp_cert_file": str(keys.sp.cert_file),
                        "sp_next_key_file": str(keys.sp_next.key_file),
                        "sp_next_cert_file": str(keys.sp_next.cert_file),
                        "allowed_redirect_urls": [PORTAL], "clock_skew_seconds": 60}
    overrides["oidc_provider"] = {
        "signing_key_file": str(keys.op.key_file),
        "published_key_files": [str(keys.op_old.key_file)],
        "portal_client_id": PORTAL_CLIENT,
        "portal_client_secret_sha256": hashlib.sha256(PORTAL_SECRET.encode()).hexdigest(),
        "portal_redirect_uris": [PORTAL_CALLBACK],
        "portal_post_logout_redirect_uris": [PORTAL_LOGGED_OUT],
        "portal_backchannel_logout_uri": "http://127.0.0.1:9/backchannel"}
    return overrides


@pytest.fixture(scope="session")
def sso_app(database_url: str, keys: Keys, db: Database) -> Flask:
    """The app with SSO settings (:func:`sso_overrides`)."""
    app = create_app(sso_overrides(database_url, keys))
    # One pool per worker: share the suite's database handle.
    app.extensions["roster.db"].dispose()
    app.extensions["roster.db"] = db
    return app


@pytest.fixture(autouse=True)
def _idp_documents_per_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """The session's SSO app reads its IdPs' discovery documents and JWKS afresh in each
    test: the cache remembers an IdP's failures and its forced JWKS re-reads for a while
    (app/sso/idp_cache.py), which must not carry over into the next test."""
    if "sso_app" not in request.fixturenames:
        yield
        return
    app = request.getfixturevalue("sso_app")
    app.extensions.pop("roster.oidc_providers", None)
    yield
    app.extensions.pop("roster.oidc_providers", None)


@pytest.fixture
def web(sso_app: Flask) -> FlaskClient:
    """A browser-like client of the SSO app (keeps cookies)."""
    return sso_app.test_client()


def saml_connection(db: Database, tenant: Tenant, certs: list[str], *,
                    entity_id: str = IDP_ENTITY, sso_url: str = IDP_SSO,
                    **columns: object) -> SsoConnection:
    """A SAML connection of the tenant, trusting ``certs``, reading the tenant's directory."""
    with db.transaction() as s:
        conn = SsoConnection(organization_id=tenant.org.id, name=f"saml-{new_id()[:8]}",
                             protocol="saml", idp_entity_id=entity_id, idp_sso_url=sso_url,
                             idp_certs=certs, attribute_map={}, oidc_algorithms=[],
                             directory_id=tenant.directory.id, **columns)
        s.add(conn)
    return conn


def add_domain(db: Database, conn: SsoConnection, domain: str, verified: bool = True) -> None:
    """Attach a (verified) email domain to a connection."""
    with db.transaction() as s:
        s.add(ConnectionDomain(connection_id=conn.id, domain=domain,
                               verified_at=utcnow() if verified else None))


def provision(db: Database, tenant: Tenant, user_name: str = "alice@acme.com", *,
              status: UserStatus = UserStatus.active, external_id: str | None = None) -> User:
    """A user in the tenant's directory, as SCIM would have stored it."""
    with db.transaction() as s:
        user = User(directory_id=tenant.directory.id, organization_id=tenant.org.id,
                    user_name=user_name, external_id=external_id,
                    active=status == UserStatus.active, status=status,
                    emails=[{"value": user_name, "primary": True}],
                    primary_email=user_name.lower(), given_name="Alice", display_name="Alice A")
        s.add(user)
    return user


def acs_url(conn: SsoConnection) -> str:
    """The connection's ACS as the test app's base URL makes it."""
    return f"http://roster.test/sso/saml/{conn.id}/acs"


def claims_for(conn: SsoConnection, **kw: object) -> Claims:
    """Claims addressed correctly to the connection."""
    return Claims(acs=acs_url(conn), audience=f"http://roster.test/sso/saml/{conn.id}/metadata",
                  **kw)


def start(web: FlaskClient, conn: SsoConnection, next_url: str | None = PORTAL + "home") -> str:
    """SP-initiated login: follow our redirect far enough to read the AuthnRequest id."""
    query = {"next": next_url} if next_url else {}
    resp = web.get(f"/sso/saml/{conn.id}/login", query_string=query)
    assert resp.status_code == 303, resp.text
    params = parse_qs(urlsplit(resp.headers["Location"]).query)
    xml = OneLogin_Saml2_Utils.decode_base64_and_inflate(params["SAMLRequest"][0])
    text = xml.decode() if isinstance(xml, bytes) else xml
    return text.split(' ID="', 1)[1].split('"', 1)[0]


def post_response(web: FlaskClient, conn: SsoConnection, xml_b64: str,
                  relay_state: str | None = None):
    """POST a SAMLResponse to the connection's ACS, as the browser's auto-POST would."""
    data = {"SAMLResponse": xml_b64}
    if relay_state is not None:
        data["RelayState"] = relay_state
    return web.post(f"/sso/saml/{conn.id}/acs", data=data)


@pytest.fixture(scope="session")
def ssp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleSamlIdp]:
    """SimpleSAMLphp on 127.0.0.1, started once per worker and always stopped."""
    with running_idp(tmp_path_factory.mktemp("simplesamlphp")) as idp:
        yield idp


def ssp_connection(db: Database, tenant: Tenant, ssp: SimpleSamlIdp, keys: Keys, *,
                   encrypt: bool = False, sign_requests: bool = False,
                   encrypt_name_id: bool = False, sp_cert: TestKey | None = None,
                   **columns: object) -> SsoConnection:
    """A connection made the way an admin would: import the IdP's metadata, register the SP
    (with ``sp_cert`` as its certificate, the current SP key's unless given)."""
    with db.transaction() as s:
        org = s.get(Organization, tenant.org.id)
        conn = create_connection(s, org, f"ssp-{new_id()[:8]}", "saml", OPERATOR,
                                 directory_id=tenant.directory.id, sign_requests=sign_requests,
                                 sp_key_configured=True, **columns)
        apply_idp_metadata(s, conn, ssp.metadata_xml(), OPERATOR)
    base = f"http://roster.test/sso/saml/{conn.id}"
    ssp.register_sp(f"{base}/metadata", f"{base}/acs",
                    sp_cert_pem=(sp_cert or keys.sp).cert_pem, encrypt=encrypt,
                    validate_requests=sign_requests, slo=f"{base}/slo",
                    encrypt_name_id=encrypt_name_id)
    return conn


@pytest.fixture
def run(database_url, db):
    """`roster ...` against the suite database (tables are emptied after the test)."""
    return roster_cli(database_url)
