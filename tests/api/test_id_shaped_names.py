"""A name that spells another row's id: directories and units are looked up by id or by
name (path), and an id must always name its own row, as for organization slugs."""

from __future__ import annotations

from app.db import new_id
from app.models import Directory, Unit
from app.models.directory import DirectoryStatus, Vendor
from app.models.organization import UnitKind
from tests.api.test_frame import assert_problem
from tests.conftest import rows


def test_a_directory_named_like_an_id_is_a_400(client, keys, tenant, db):
    """A directory named with another directory's id made that id name two directories:
    which one a lookup (GET, disable, a token) found was up to the database. Refused like
    an id-shaped organization slug; nothing is created."""
    before = rows(db, "SELECT count(*) AS n FROM directories")[0].n
    for name in (tenant.directory.id, new_id()):
        response = client.post(f"/api/v1/orgs/{tenant.org.id}/directories",
                               headers=keys["admin"].headers,
                               json={"vendor": "entra", "name": name})
        problem = assert_problem(response, 400, "validation")
        assert [e["field"] for e in problem["errors"]] == ["name"]
        assert "shape of an id" in problem["detail"]
    assert rows(db, "SELECT count(*) AS n FROM directories")[0].n == before


def test_an_id_names_its_own_directory_and_unit_even_when_a_name_spells_it(client, keys,
                                                                           tenant, db):
    """Rows stored before names of that shape were refused (or unit paths taken from an
    IdP attribute, which may hold ids): the id wins over a name that spells it, on both
    databases, instead of whichever row the database returned first."""
    with db.transaction() as session:
        session.add(Directory(organization_id=tenant.org.id, name=tenant.directory.id,
                              vendor=Vendor.entra, status=DirectoryStatus.active))
        first = Unit(organization_id=tenant.org.id, kind=UnitKind.department, name="Eng",
                     path="Eng")
        session.add(first)
        session.flush()
        session.add(Unit(organization_id=tenant.org.id, kind=UnitKind.department,
                         name=first.id, path=first.id))
        first_id = first.id
    base = f"/api/v1/orgs/{tenant.org.id}"
    admin = keys["admin"].headers
    for _ in range(3):
        got = client.get(f"{base}/directories/{tenant.directory.id}", headers=admin)
        assert got.get_json()["name"] == tenant.directory.name
    disabled = client.post(f"{base}/directories/{tenant.directory.id}/disable", headers=admin)
    assert disabled.get_json()["name"] == tenant.directory.name
    assert rows(db, "SELECT name FROM directories WHERE status = 'disabled'")[0].name == \
        tenant.directory.name
    child = client.post(f"{base}/units", headers=admin,
                        json={"name": "Tokyo", "kind": "location", "parent": first_id})
    assert child.status_code == 201, child.get_json()
    assert child.get_json()["path"] == "Eng/Tokyo"
