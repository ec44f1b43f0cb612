"""An organization is named by its id or its slug: one reference never names two.

A slug may take the shape of an id (lower-case hex and '-'), so an operator could create
an organization whose slug is another one's id; /orgs/<that id> then answered the new
organization, and an admin key asked for the first one's id was bound to the second.
"""

from __future__ import annotations

from sqlalchemy import update

from app.models import Organization
from tests.api.test_frame import assert_problem
from tests.conftest import make_tenant


def test_a_slug_with_the_shape_of_an_id_is_refused(client, db, keys, tenant):
    """POST /orgs with another organization's id as slug: 400 naming slug, nothing stored."""
    response = client.post("/api/v1/orgs", json={"slug": tenant.org.id},
                           headers=keys["operator"].headers)
    problem = assert_problem(response, 400, "validation")
    assert [e["field"] for e in problem["errors"]] == ["slug"]
    assert "shape of an id" in problem["detail"]
    listed = client.get("/api/v1/orgs", headers=keys["operator"].headers).get_json()["items"]
    assert [o["slug"] for o in listed] == ["acme"]


def test_an_id_names_its_organization_even_beside_a_slug_that_spells_it(client, db, keys,
                                                                       tenant):
    """A slug stored before they were refused: the id wins, in URLs and in key binding."""
    other = make_tenant(db, "later")
    with db.transaction() as session:
        session.execute(update(Organization).where(Organization.id == other.org.id)
                        .values(slug=tenant.org.id))
    headers = keys["operator"].headers
    for _ in range(3):
        found = client.get(f"/api/v1/orgs/{tenant.org.id}", headers=headers).get_json()
        assert (found["id"], found["slug"]) == (tenant.org.id, "acme")
    created = client.post("/api/v1/apikeys", headers=headers, json={
        "role": "admin", "organization": tenant.org.id}).get_json()
    assert created["organization_id"] == tenant.org.id
    admin = {"Authorization": f"Bearer {created['key']}"}
    assert client.get(f"/api/v1/orgs/{tenant.org.id}/units", headers=admin).status_code == 200
