"""GET /api/v1/directories/{id}/dialect and /requests: the dialect report and flight recorder."""

from __future__ import annotations

import json

from app.scim.recorder import flush
from tests.api.test_frame import assert_problem
from tests.scim.support import CORE_USER, PATCH_OP


def _entra_traffic(client, tenant):
    created = client.post("/scim/v2/Users", headers=tenant.headers, json={
        "schemas": [CORE_USER], "userName": "api@contoso.com", "password": "P@ss-w0rd!"})
    user_id = created.get_json()["id"]
    client.patch(f"/scim/v2/Users/{user_id}", headers=tenant.headers, json={
        "schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active",
                                               "value": "False"}]})
    client.patch(f"/scim/v2/Users/{user_id}", headers=tenant.headers, json={
        "schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "nope", "value": 1}]})
    flush(client.application)  # the recorder writes in the background; write it now


def test_dialect_report_in_plain_words(client, keys, tenant):
    """An admin reads the label, the advice and each counter with its meaning."""
    _entra_traffic(client, tenant)
    response = client.get(f"/api/v1/directories/{tenant.directory.id}/dialect",
                          headers=keys["admin"].headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["dialect"] == "entra-legacy"
    assert "add aadOptscim062020 to the tenant URL" in body["summary"]
    by_note = {n["note"]: n for n in body["notes"]}
    assert by_note["string_boolean"]["count"] == 1
    assert by_note["capitalised_op"]["count"] == 2
    assert "True" in by_note["string_boolean"]["meaning"]


def test_requests_newest_first_failed_only_and_redacted(client, keys, tenant):
    """The recorder listing: newest first, ?failed=true keeps errors, passwords masked."""
    _entra_traffic(client, tenant)
    url = f"/api/v1/directories/{tenant.directory.id}/requests"
    items = client.get(url, headers=keys["auditor"].headers).get_json()["items"]
    assert [(i["method"], i["status"]) for i in items] == \
        [("PATCH", 400), ("PATCH", 200), ("POST", 201)]
    assert json.loads(items[2]["request_body"])["password"] == "[REDACTED]"
    assert "P@ss-w0rd!" not in json.dumps(items)
    failed = client.get(f"{url}?failed=true&limit=5", headers=keys["admin"].headers)
    assert [i["status"] for i in failed.get_json()["items"]] == [400]
    assert "invalidPath" in failed.get_json()["items"][0]["response_body"]


def test_another_organization_sees_404(client, keys, other_keys, tenant):
    """Another organization's admin cannot tell the directory exists; portal keys get 403."""
    for path in ("dialect", "requests"):
        url = f"/api/v1/directories/{tenant.directory.id}/{path}"
        assert_problem(client.get(url, headers=other_keys["admin"].headers), 404, "not-found")
        assert_problem(client.get(url, headers=keys["portal"].headers), 403, "forbidden")
        assert client.get(url, headers=keys["operator"].headers).status_code == 200


def test_a_pathless_reactivation_is_not_explained_as_a_deactivation(client, keys, tenant):
    """Okta reactivates with a path-less ``{"active": true}``, counted under the same note as
    its deactivation: the note's meaning names both, not a deactivation the IdP never sent."""
    created = client.post("/scim/v2/Users", headers=tenant.headers, json={
        "schemas": [CORE_USER], "userName": "back@okta.example", "active": False})
    client.patch(f"/scim/v2/Users/{created.get_json()['id']}", headers=tenant.headers, json={
        "schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": True}}]})
    flush(client.application)
    body = client.get(f"/api/v1/directories/{tenant.directory.id}/dialect",
                      headers=keys["admin"].headers).get_json()
    meaning = {n["note"]: n["meaning"] for n in body["notes"]}["pathless_active"]
    assert "reactivation" in meaning
    assert '{"active": true}' in meaning


def test_requests_page_as_every_list(client, keys, tenant):
    """The recorder listing follows the API's list rule (README, Lists): ``limit`` 1-200,
    a 400 naming it past that (it took up to 1000, with no way to reach further), and
    ``next_cursor`` goes on newest first to the oldest, each request once; a cursor of
    another list is refused."""
    _entra_traffic(client, tenant)
    url = f"/api/v1/directories/{tenant.directory.id}/requests"
    headers = keys["admin"].headers
    for limit in ("0", "201", "1000"):
        body = assert_problem(client.get(f"{url}?limit={limit}", headers=headers), 400,
                              "validation")
        assert "limit" in {e["field"] for e in body["errors"]}
    assert client.get(f"{url}?limit=200", headers=headers).status_code == 200
    seen, cursor = [], None
    while True:
        page = client.get(url, headers=headers, query_string={
            "limit": 2, **({"cursor": cursor} if cursor else {})}).get_json()
        assert len(page["items"]) <= 2
        seen += [(i["method"], i["status"]) for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [("PATCH", 400), ("PATCH", 200), ("POST", 201)]
    first = client.get(f"{url}?limit=1", headers=headers).get_json()
    other = client.get(f"/api/v1/orgs/{tenant.org.id}/roles?limit=1", headers=headers).get_json()
    assert_problem(client.get(f"{url}?cursor={other['next_cursor']}", headers=headers), 400,
                   "validation")
    failed = client.get(f"{url}?failed=true&limit=1&cursor={first['next_cursor']}",
                        headers=headers).get_json()
    assert ([i["status"] for i in failed["items"]], failed["next_cursor"]) == ([], None)
