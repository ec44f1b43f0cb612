"""Connection names may not be blank, and an empty directory reference is not "none"."""

from __future__ import annotations

import pytest

from tests.api.conftest import make_key
from tests.api.test_frame import assert_problem
from tests.conftest import rows
from tests.sso import forge


@pytest.fixture
def admin(db, tenant):
    """The tenant's admin key."""
    return make_key(db, "admin", tenant.org)


def _create(web, tenant, admin, keys, **fields):
    xml = forge.idp_metadata([keys.idp.cert_b64])
    return web.post(f"/api/v1/orgs/{tenant.org.id}/connections", headers=admin.headers,
                    json={"name": "okta", "protocol": "saml", "metadata_xml": xml,
                          "directory": tenant.directory.name, **fields})


@pytest.mark.parametrize("name", [" ", "\t\t"])
def test_blank_connection_name_is_a_400_on_create_and_update(db, tenant, keys, web, admin,
                                                             name):
    """Create and PATCH refuse a whitespace-only name alike; nothing changes."""
    body = assert_problem(_create(web, tenant, admin, keys, name=name), 400, "validation")
    assert [e["field"] for e in body["errors"]] == ["name"]
    assert rows(db, "SELECT count(*) AS n FROM sso_connections")[0].n == 0
    cid = _create(web, tenant, admin, keys).get_json()["id"]
    response = web.patch(f"/api/v1/orgs/{tenant.org.id}/connections/{cid}",
                         headers=admin.headers, json={"name": name})
    body = assert_problem(response, 400, "validation")
    assert [e["field"] for e in body["errors"]] == ["name"]
    assert rows(db, "SELECT name FROM sso_connections")[0].name == "okta"


def test_an_empty_directory_reference_is_a_400_not_a_clear(db, tenant, keys, web, admin):
    """``"directory": ""`` used to clear the directory; null is how to clear it."""
    cid = _create(web, tenant, admin, keys).get_json()["id"]
    url = f"/api/v1/orgs/{tenant.org.id}/connections/{cid}"
    body = assert_problem(web.patch(url, headers=admin.headers, json={"directory": ""}),
                          400, "validation")
    assert [e["field"] for e in body["errors"]] == ["directory"]
    assert rows(db, "SELECT directory_id FROM sso_connections")[0].directory_id == \
        tenant.directory.id
    cleared = web.patch(url, headers=admin.headers, json={"directory": None})
    assert cleared.status_code == 200, cleared.text
    assert cleared.get_json()["directory_id"] is None
