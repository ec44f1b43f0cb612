"""Helpers for SCIM HTTP tests: payloads and a thin client wrapper."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from tests.conftest import Tenant

SCIM = "application/scim+json"
BASE = "/scim/v2"
CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def user_body(user_name: str = "ada@acme.example", **extra: Any) -> dict[str, Any]:
    """An Okta-like User create body."""
    body: dict[str, Any] = {
        "schemas": [CORE_USER, ENTERPRISE], "userName": user_name, "externalId": "00u1",
        "name": {"givenName": "Ada", "familyName": "Lovelace"}, "active": True,
        "emails": [{"value": user_name, "type": "work", "primary": True}],
        ENTERPRISE: {"department": "Engineering", "costCenter": "CC-1"},
    }
    body.update(extra)
    return body


def group_body(name: str = "Engineering", members: list[str] | None = None) -> dict[str, Any]:
    """A Group create body."""
    body: dict[str, Any] = {"schemas": [CORE_GROUP], "displayName": name}
    if members is not None:
        body["members"] = [{"value": m} for m in members]
    return body


class Scim:
    """Send SCIM requests as one tenant."""

    def __init__(self, client: FlaskClient, tenant: Tenant) -> None:
        self.client = client
        self.tenant = tenant

    def request(self, method: str, path: str, json: Any = None,
                headers: dict[str, str] | None = None, **kw: Any) -> Any:
        """Send one request with the tenant's token and the SCIM media type."""
        all_headers = {**self.tenant.headers, **(headers or {})}
        if json is not None:
            kw["json"] = json
            kw.setdefault("content_type", SCIM)
        return self.client.open(BASE + path, method=method, headers=all_headers, **kw)

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, json, **kw)

    def put(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.request("PUT", path, json, **kw)

    def patch(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.request("PATCH", path, json, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)

    def create_user(self, user_name: str = "ada@acme.example", **extra: Any) -> dict[str, Any]:
        """POST a user and return the created resource (asserting 201)."""
        response = self.post("/Users", user_body(user_name, **extra))
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def create_group(self, name: str = "Engineering",
                     members: list[str] | None = None) -> dict[str, Any]:
        """POST a group and return the created resource (asserting 201)."""
        response = self.post("/Groups", group_body(name, members))
        assert response.status_code == 201, response.get_json()
        return response.get_json()


def assert_error(response: Any, status: int, scim_type: str | None = None) -> dict[str, Any]:
    """The response is a SCIM Error with this status (as a string) and scimType."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == SCIM
    body = response.get_json()
    assert body["schemas"] == [ERROR]
    assert body["status"] == str(status)
    if scim_type is not None:
        assert body.get("scimType") == scim_type, body
    return body


@contextlib.contextmanager
def live_server(app: Flask) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (threaded werkzeug) and yield its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


T = TypeVar("T")


def http_call(url: str, token: str, method: str, path: str, body: Any = None, *,
              timeout: float = 60) -> tuple[int, Any]:
    """One SCIM request over real HTTP (``live_server``): the status and the JSON body
    (None when empty)."""
    request = urllib.request.Request(
        f"{url}/scim/v2{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": SCIM})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    return status, json.loads(raw) if raw else None


def at_once(calls: list[Callable[[], T]], *, timeout: float = 120) -> list[T]:
    """Run the calls on one thread each, released together by a barrier so that they
    really overlap; their results in the calls' order."""
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(index: int) -> None:
        barrier.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    return results
