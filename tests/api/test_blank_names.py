"""Names an operator or admin gives may not be blank: a 400 naming the field, nothing
written, the same through every endpoint that takes one."""

from __future__ import annotations

import pytest

from tests.api.test_frame import assert_problem
from tests.conftest import rows

BLANKS = [" ", "\t \n", "\u3000"]


def _refused(response) -> None:
    body = assert_problem(response, 400, "validation")
    assert [e["field"] for e in body["errors"]] == ["name"]
    assert "blank" in body["errors"][0]["detail"]


@pytest.mark.parametrize("name", BLANKS)
def test_blank_organization_name_is_a_400(client, keys, db, name):
    """An operator cannot create an organization that lists as nothing."""
    response = client.post("/api/v1/orgs", headers=keys["operator"].headers,
                           json={"slug": "blank", "name": name})
    _refused(response)
    assert rows(db, "SELECT count(*) AS n FROM organizations WHERE slug = 'blank'")[0].n == 0


@pytest.mark.parametrize("name", BLANKS)
def test_blank_directory_name_is_a_400(client, keys, tenant, db, name):
    """A directory's name is how the admin tells directories apart."""
    before = rows(db, "SELECT count(*) AS n FROM directories")[0].n
    response = client.post(f"/api/v1/orgs/{tenant.org.id}/directories",
                           headers=keys["admin"].headers, json={"vendor": "okta", "name": name})
    _refused(response)
    assert rows(db, "SELECT count(*) AS n FROM directories")[0].n == before


@pytest.mark.parametrize("name", BLANKS)
def test_blank_role_name_is_a_400(client, keys, tenant, db, name):
    """A custom role needs a name that shows."""
    response = client.post(f"/api/v1/orgs/{tenant.org.id}/roles",
                           headers=keys["admin"].headers,
                           json={"key": "blank_role", "name": name})
    _refused(response)
    assert rows(db, "SELECT count(*) AS n FROM roles WHERE key = 'blank_role'")[0].n == 0


@pytest.mark.parametrize("name", BLANKS)
def test_blank_api_key_name_is_a_400(client, keys, tenant, db, name):
    """A name that is given must say something; omitted, the key simply has none."""
    before = rows(db, "SELECT count(*) AS n FROM api_keys")[0].n
    response = client.post("/api/v1/apikeys", headers=keys["operator"].headers,
                           json={"role": "auditor", "organization": tenant.org.slug,
                                 "name": name})
    _refused(response)
    assert rows(db, "SELECT count(*) AS n FROM api_keys")[0].n == before
    response = client.post("/api/v1/apikeys", headers=keys["operator"].headers,
                           json={"role": "auditor", "organization": tenant.org.slug})
    assert response.status_code == 201


def _refused_empty(response) -> None:
    body = assert_problem(response, 400, "validation")
    assert [e["field"] for e in body["errors"]] == ["name"]
    assert "empty" in body["errors"][0]["detail"]


def test_an_empty_organization_name_is_a_400_not_the_slug(client, keys, db):
    """``"name": ""`` was taken as "no name" and the organization named after its slug
    without a word (the CLI's ``--name ""`` is a usage error); a name left out still
    defaults to the slug."""
    response = client.post("/api/v1/orgs", headers=keys["operator"].headers,
                           json={"slug": "blank", "name": ""})
    _refused_empty(response)
    assert rows(db, "SELECT count(*) AS n FROM organizations WHERE slug = 'blank'")[0].n == 0
    response = client.post("/api/v1/orgs", headers=keys["operator"].headers,
                           json={"slug": "blank"})
    assert response.status_code == 201
    assert response.get_json()["name"] == "blank"


def test_an_empty_api_key_name_is_a_400(client, keys, tenant, db):
    """``"name": ""`` is a name given empty, as the CLI's ``--name ""`` (a usage error);
    left out, the key has none."""
    before = rows(db, "SELECT count(*) AS n FROM api_keys")[0].n
    response = client.post("/api/v1/apikeys", headers=keys["operator"].headers,
                           json={"role": "auditor", "organization": tenant.org.slug,
                                 "name": ""})
    _refused_empty(response)
    assert rows(db, "SELECT count(*) AS n FROM api_keys")[0].n == before


@pytest.mark.parametrize("name", ["", *BLANKS])
def test_an_empty_or_blank_unit_or_directory_name_is_a_400(client, keys, tenant, db, name):
    """Units and directories refuse an empty name and a whitespace-only one alike, with a
    400 naming the field; nothing is written."""
    units = rows(db, "SELECT count(*) AS n FROM units")[0].n
    directories = rows(db, "SELECT count(*) AS n FROM directories")[0].n
    base = f"/api/v1/orgs/{tenant.org.id}"
    for path, body in (("/units", {"name": name, "kind": "department"}),
                       ("/directories", {"vendor": "okta", "name": name})):
        response = client.post(base + path, headers=keys["admin"].headers, json=body)
        problem = assert_problem(response, 400, "validation")
        assert [e["field"] for e in problem["errors"]] == ["name"]
        assert ("empty" if not name else "blank") in problem["errors"][0]["detail"]
    assert rows(db, "SELECT count(*) AS n FROM units")[0].n == units
    assert rows(db, "SELECT count(*) AS n FROM directories")[0].n == directories


@pytest.mark.parametrize("param", [" ", "\t", "spending limit", "a.b", "Limit", "x\n",
                                   "l\u00efmit"])
def test_a_role_parameter_name_is_a_key_not_any_string(client, keys, tenant, db, param):
    """A custom role's parameter names were any string of 1-64 characters: a blank one (it
    lists as nothing, ``roster role list`` showed ``=true``), one with a dot (the field
    paths of errors, ``parameters.a.b.default``, no longer said which), a newline. They are
    keys, as role keys are: lower-case letters, digits and _, 1-64; else a 400 naming the
    field, and no role."""
    response = client.post(f"/api/v1/orgs/{tenant.org.id}/roles",
                           headers=keys["admin"].headers,
                           json={"key": "odd_param", "name": "Odd",
                                 "parameters": {param: {"type": "bool", "default": True}}})
    body = assert_problem(response, 400, "validation")
    assert [e["field"] for e in body["errors"]] == ["parameters"]
    assert "lower-case letters, digits and _" in body["errors"][0]["detail"]
    assert rows(db, "SELECT count(*) AS n FROM roles WHERE key = 'odd_param'")[0].n == 0
