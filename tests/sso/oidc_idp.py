"""OIDC identity providers on loopback for the relying-party tests.

* ``iam``: pytest-iam (a real canaille OAuth2/OIDC server) started once per test session;
  its issuer is http://localhost:PORT and it signs ID tokens with RS512.
* ``hostile``: a tiny OIDC provider on 127.0.0.1 that signs whatever a test asks for (a
  hostile IdP, not a mock of our code): alg none, wrong iss/aud/nonce, foreign keys.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import portpicker
import pytest
import requests
from canaille import create_app as create_canaille
from canaille.backends import Backend
from joserfc import jwt
from joserfc.jwk import ECKey, JWKRegistry, RSAKey
from pytest_iam import Server

from app.db import Database, new_id
from app.models import Organization
from app.models.sso import SsoConnection
from app.sso.connections import create_connection
from app.sso.oidc_config import configure_oidc
from tests.conftest import OPERATOR, Tenant, rows

ROSTER = "http://roster.test"
PORTAL = "https://portal.test/"  # the sso_app fixture's allowed redirect
SECRET_KEY = "t" * 40  # the sso_app fixture's secret_key
SIGNING_ALGS = ["RS256", "RS512", "ES256", "PS256"]


def callback_of(connection_id: str) -> str:
    """The redirection URI Roster registers for a connection."""
    return f"{ROSTER}/sso/oidc/{connection_id}/callback"


@dataclass
class IamIdp:
    """pytest-iam's canaille server, with helpers to add users and clients and to sign in."""

    server: Server

    @property
    def issuer(self) -> str:
        """http://localhost:PORT (no trailing slash), as canaille announces it."""
        return f"http://localhost:{self.server.port}"

    @property
    def discovery_url(self) -> str:
        """The OIDC discovery document of the server."""
        return f"{self.issuer}/.well-known/openid-configuration"

    def user(self, user_name: str, email: str, password: str, *,
             groups: tuple[str, ...] = ()) -> None:
        """A canaille user (optionally member of groups) who can sign in with a password."""
        with self.server.app.app_context():
            models = self.server.models
            user = models.User(user_name=user_name, password=password, emails=[email],
                               given_name="Alice", family_name="Archer",
                               formatted_name="Alice Archer")
            self.server.backend.save(user)
            for name in groups:
                self.server.backend.save(models.Group(display_name=name, members=[user]))

    def client(self, connection_id: str) -> tuple[str, str]:
        """Register Roster's connection as a confidential client; (client_id, secret)."""
        client_id, secret = f"roster-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        with self.server.app.app_context():
            client = self.server.models.Client(
                client_id=client_id, client_secret=secret, client_name="Roster",
                redirect_uris=[callback_of(connection_id)],
                post_logout_redirect_uris=[f"{ROSTER}/sso/oidc/{connection_id}/logged-out"],
                grant_types=["authorization_code"], response_types=["code"],
                token_endpoint_auth_method="client_secret_basic",
                scope=["openid", "email", "profile", "groups"],
                client_id_issued_at=datetime.datetime.now(datetime.UTC))
            self.server.backend.save(client)
            client.audience = [client]
            self.server.backend.save(client)
        return client_id, secret

    def sign_in(self, authorize_url: str, login: str, password: str,
                browser: requests.Session | None = None) -> str:
        """Play the employee at the IdP: login, password, consent; the callback URL we get.

        Pass ``browser`` to keep the IdP's session cookie (e.g. to log out there later)."""
        browser, url = browser or requests.Session(), authorize_url
        for _ in range(12):
            resp = browser.get(url, allow_redirects=False, timeout=10)
            while resp.status_code == 200:
                form = _canaille_form(resp.text, login, password)
                resp = browser.post(resp.url, data=form, allow_redirects=False, timeout=10)
            assert resp.status_code in (302, 303), resp.text[:500]
            url = requests.compat.urljoin(resp.url, resp.headers["Location"])
            if url.startswith(ROSTER):
                return url
        raise AssertionError("the IdP never sent the browser back to Roster")


def _canaille_form(html: str, login: str, password: str) -> dict[str, str]:
    if 'name="password"' in html:
        return {"password": password, "answer": ""}
    if 'value="accept"' in html:
        return {"answer": "accept"}
    if 'name="login"' in html:
        return {"login": login, "answer": ""}
    page = re.sub(r"\s+", " ", html)[:300]
    raise AssertionError(f"unexpected IdP page: {page}")


@pytest.fixture(scope="session")
def iam() -> Iterator[IamIdp]:
    """A canaille OIDC server (pytest-iam) on localhost, started once and always stopped."""
    port = portpicker.pick_unused_port()
    key = JWKRegistry.generate_key("RSA", 2048)
    key.ensure_kid()
    config = {
        "TESTING": True, "ENV_FILE": None, "SECRET_KEY": uuid.uuid4().hex,
        "WTF_CSRF_ENABLED": False, "PREFERRED_URL_SCHEME": "http",
        "SERVER_NAME": f"localhost:{port}",
        "CANAILLE": {"DATABASE": "memory", "JAVASCRIPT": False,
                     "ACL": {"DEFAULT": {"PERMISSIONS": ["use_oidc"]}}},
        "CANAILLE_OIDC": {"ACTIVE_JWKS": [key.as_dict(private=True)]},
    }
    app = create_canaille(config=config, env_file=None, env_prefix="PYTEST_IAM_")
    server = Server(app, port, Backend.instance)
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield IamIdp(server)
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(10)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class HostileIdp:
    """An OIDC provider on 127.0.0.1 whose ID tokens the test writes (``token_for``)."""

    port: int
    rsa: RSAKey = field(default_factory=lambda: RSAKey.generate_key(
        2048, parameters={"kid": "rsa-1"}))
    ec: ECKey = field(default_factory=lambda: ECKey.generate_key(
        "P-256", parameters={"kid": "ec-1"}))
    published: list[Any] = field(default_factory=list)
    token_for: Callable[[dict[str, Any]], str] | None = None
    authorizations: dict[str, dict[str, str]] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    # Called with the path of each request before it is answered (to look at the database).
    on_request: Callable[[str], None] | None = None
    # Added to the discovery document; put into the authorization response's query.
    metadata: dict[str, Any] = field(default_factory=dict)
    response_params: dict[str, str] = field(default_factory=dict)
    # Path -> seconds between the bytes of its JSON answer (an IdP that trickles it, each
    # byte well within a read's timeout); paths whose answer stops halfway (Content-Length
    # promises twice what is sent, then the connection closes).
    trickle: dict[str, float] = field(default_factory=dict)
    truncate: set[str] = field(default_factory=set)
    # Where POST /token sends the client instead (307: the same POST, body and all), and
    # the forms POSTed there (/token-elsewhere answers as /token would).
    token_redirect: str | None = None
    redirected_posts: list[dict[str, str]] = field(default_factory=list)
    # Path -> the status it answers instead, with ``failing_body`` as JSON (an IdP in an
    # outage: 500, 502, 503; one rate limiting us: 429).
    failing: dict[str, int] = field(default_factory=dict)
    failing_body: dict[str, Any] = field(default_factory=lambda: {"error": "server_error"})
    # Path -> (status, Content-Type, body) answered as it is (GET or POST); members added
    # to the token response.
    raw: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)
    token_extra: dict[str, Any] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        """http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def discovery_url(self) -> str:
        """Its discovery document."""
        return f"{self.issuer}/.well-known/openid-configuration"

    def reset(self) -> None:
        """Publish the two usual keys and sign honestly with RS256 (each test starts here)."""
        self.published = [self.rsa, self.ec]
        self.token_for = None
        self.on_request = None
        self.metadata, self.response_params = {}, {}
        self.trickle, self.truncate = {}, set()  # a trickle in progress stops
        self.token_redirect = None
        self.failing, self.failing_body = {}, {"error": "server_error"}
        self.raw, self.token_extra = {}, {}
        self.redirected_posts.clear()
        self.authorizations.clear()
        self.token_requests.clear()

    def sign(self, claims: dict[str, Any], *, alg: str = "RS256", key: Any = None,
             header: dict[str, Any] | None = None) -> str:
        """A compact JWS over ``claims``; ``alg: none`` gives an unsigned token."""
        if alg == "none":
            head = {"alg": "none", "typ": "JWT", **(header or {})}
            return (f"{_b64(json.dumps(head).encode())}."
                    f"{_b64(json.dumps(claims).encode())}.")
        key = key or (self.ec if alg.startswith("ES") else self.rsa)
        head = {"alg": alg, "typ": "JWT", "kid": key.kid, **(header or {})}
        return jwt.encode(head, claims, key, algorithms=[alg])

    def claims(self, auth: dict[str, str]) -> dict[str, Any]:
        """Honest claims for an authorization request."""
        now = int(time.time())
        return {"iss": self.issuer, "aud": auth["client_id"], "sub": "alice-sub",
                "email": "alice@acme.com", "nonce": auth.get("nonce"), "iat": now,
                "exp": now + 300, "groups": ["buyers"]}

    def client(self, connection_id: str) -> tuple[str, str]:
        """Any client is welcome here; (client_id, secret)."""
        return f"roster-{connection_id[:8]}", "hostile-secret"

    def document(self) -> dict[str, Any]:
        """Discovery metadata (OIDC Discovery §3)."""
        return {"issuer": self.issuer, "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token", "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"], "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": SIGNING_ALGS, **self.metadata}

    def token_response(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """Like a real IdP: the code must exist and the PKCE verifier must match."""
        self.token_requests.append(form)
        auth = self.authorizations.get(form.get("code", ""))
        if auth is None:
            return 400, {"error": "invalid_grant"}
        verifier = form.get("code_verifier", "")
        if _b64(hashlib.sha256(verifier.encode()).digest()) != auth.get("code_challenge"):
            return 400, {"error": "invalid_grant", "error_description": "PKCE mismatch"}
        claims = self.claims(auth)
        token = self.token_for(claims) if self.token_for else self.sign(claims)
        return 200, {"access_token": "at", "token_type": "Bearer", "id_token": token,
                     **self.token_extra}


def _handler(idp: HostileIdp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            path = self.path.partition("?")[0]
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            cut = path in idp.truncate
            self.send_header("Content-Length", str(len(data) * (2 if cut else 1)))
            self.end_headers()
            delay = idp.trickle.get(path)
            if cut:
                self.wfile.write(data)
                self.close_connection = True
                return
            if delay is None:
                self.wfile.write(data)
                return
            for i in range(len(data)):
                if idp.trickle.get(path) != delay:  # reset: the test is over
                    return
                try:
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()
                except OSError:  # the client gave up (its deadline passed)
                    return
                time.sleep(delay)

        def _raw(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if idp.on_request is not None:
                idp.on_request(path)
            if path in idp.raw:
                return self._raw(*idp.raw[path])
            if path in idp.failing:
                return self._json(idp.failing[path], idp.failing_body)
            if path == "/.well-known/openid-configuration":
                return self._json(200, idp.document())
            if path == "/jwks":
                return self._json(200, {"keys": [k.as_dict(private=False)
                                                  for k in idp.published]})
            if path == "/authorize":
                params = {k: v[0] for k, v in parse_qs(query).items()}
                code = uuid.uuid4().hex
                idp.authorizations[code] = params
                self.send_response(302)
                self.send_header("Location", params["redirect_uri"] + "?" + urlencode(
                    {"code": code, "state": params.get("state", ""),
                     **idp.response_params}))
                self.end_headers()
                return None
            return self._json(404, {"error": "not_found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if idp.on_request is not None:
                idp.on_request(self.path)
            if self.path in idp.raw:
                return self._raw(*idp.raw[self.path])
            if self.path in idp.failing:
                return self._json(idp.failing[self.path], idp.failing_body)
            if self.path == "/token" and idp.token_redirect:
                self.send_response(307)
                self.send_header("Location", idp.token_redirect)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            if self.path == "/token-elsewhere":
                idp.redirected_posts.append(form)
                return self._json(*idp.token_response(form))
            if self.path == "/token":
                return self._json(*idp.token_response(form))
            return self._json(404, {"error": "not_found"})

    return Handler


@pytest.fixture(scope="session")
def hostile_server() -> Iterator[HostileIdp]:
    """The hostile IdP's HTTP server, once per session."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    idp = HostileIdp(httpd.server_address[1])
    httpd.RequestHandlerClass = _handler(idp)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield idp
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@pytest.fixture
def hostile(hostile_server: HostileIdp) -> HostileIdp:
    """The hostile IdP, reset to honest behaviour for this test."""
    hostile_server.reset()
    return hostile_server


def follow_to_roster(location: str) -> str:
    """The browser at the hostile IdP: its /authorize answers at once with a redirect."""
    resp = requests.get(location, allow_redirects=False, timeout=10)
    assert resp.status_code == 302, resp.text
    return resp.headers["Location"]


def roster_path(url: str) -> str:
    """Path and query of a Roster URL, for the Flask test client."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def oidc_connection(db: Database, tenant: Tenant, idp: IamIdp | HostileIdp, *,
                    policy: str = "scim", algorithms: list[str] | None = None,
                    **columns: object) -> SsoConnection:
    """An OIDC connection set up as an admin would: create, register at the IdP, configure."""
    with db.transaction() as s:
        org = s.get(Organization, tenant.org.id)
        conn = create_connection(s, org, f"oidc-{new_id()[:8]}", "oidc", OPERATOR,
                                 login_policy=policy, directory_id=tenant.directory.id)
        client_id, secret = idp.client(conn.id)
        configure_oidc(s, conn, OPERATOR, secret_key=SECRET_KEY,
                       discovery_url=idp.discovery_url, client_id=client_id,
                       client_secret=secret, scopes="openid email profile groups",
                       algorithms=algorithms)
        for name, value in columns.items():
            setattr(conn, name, value)
    return conn


def start_login(web: Any, conn: SsoConnection, next_url: str = PORTAL + "home") -> str:
    """GET Roster's OIDC login; the IdP authorization URL it redirects to."""
    resp = web.get(f"/sso/oidc/{conn.id}/login", query_string={"next": next_url})
    assert resp.status_code == 303, resp.text
    return resp.headers["Location"]


def refused_with(db: Database, resp: Any, reason: str) -> dict[str, Any]:
    """The login was refused with ``reason``: plain page, its correlation id traced, no session."""
    assert resp.status_code == 403, resp.text
    correlation = re.search(r"id=correlation-id>([^<]+)<", resp.text)
    assert correlation, resp.text
    traces = rows(db, "SELECT id, reason, protocol, payload FROM sso_login_traces")
    assert [(t.reason, t.protocol) for t in traces] == [(reason, "oidc")]
    assert traces[0].id == correlation.group(1)
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 0
    payload = traces[0].payload
    return payload if isinstance(payload, dict) else json.loads(payload)
