"""A unit the mapping would make from an IdP attribute gets the name rule of units made by
hand (app/visible_names.py): a value with a control character or no visible one names no
unit; the rule skips the user, the IdP's request succeeds and the value is stored as sent."""

from __future__ import annotations

import pytest

from app.errors import InvalidInput
from app.mapping.ruleset import parse_document
from tests.conftest import rows
from tests.scim.support import ENTERPRISE, Scim, user_body

BY_DEPARTMENT = {"rules": [{"id": "dept", "role": "buyer", "create_unit": True,
                            "unit_from": {"attribute": "department", "under": "Departments"},
                            "match": {"attribute": "department", "present": True}}]}


@pytest.mark.parametrize("department", ["Sales\tEU", "Sales\x01", "\u200b", "\u2060\ufeff",
                                        "\u00ad", "\x1b]52;c;aGk=\x07", "Sales\u202eUE"])
def test_an_idp_department_that_is_no_usable_unit_name_makes_no_unit(client, world,
                                                                     department):
    """An IdP's department with a tab, U+0001 or an OSC sequence made a unit of that name
    (it broke every list and table of units), and one of invisible characters only made a
    unit listed as nothing. The rule now skips the user, as for a value holding '/'; the
    SCIM write still succeeds and stores the department exactly as sent (RFC 7643)."""
    world.apply(BY_DEPARTMENT)
    units = rows(world.db, "SELECT count(*) AS n FROM units")[0].n
    scim = Scim(client, world.tenant)
    response = scim.post("/Users", user_body("odd@acme.example", **{
        ENTERPRISE: {"department": department}}))
    assert response.status_code == 201, response.get_json()
    assert response.get_json()[ENTERPRISE]["department"] == department
    user_id = response.get_json()["id"]
    assert rows(world.db, "SELECT department FROM users WHERE id = :u",
                u=user_id)[0].department == department
    assert rows(world.db, "SELECT count(*) AS n FROM units")[0].n == units
    assert rows(world.db, "SELECT count(*) AS n FROM grants WHERE user_id = :u",
                u=user_id)[0].n == 0


def test_a_visible_department_still_makes_its_unit(client, world):
    """The rule still makes a unit for an ordinary department, format characters inside
    a visible name included."""
    world.apply(BY_DEPARTMENT)
    scim = Scim(client, world.tenant)
    response = scim.post("/Users", user_body("ok@acme.example", **{
        ENTERPRISE: {"department": "Ein\u00adkauf"}}))
    assert response.status_code == 201, response.get_json()
    assert rows(world.db, "SELECT count(*) AS n FROM units WHERE path = :p",
                p="Departments/Ein\u00adkauf")[0].n == 1


@pytest.mark.parametrize("part", ["\u200b", "Tokyo\tEast"])
def test_a_rule_naming_an_unusable_unit_path_is_refused(part):
    """A rule's unit path is named as units are: a part with a control character or no
    visible one is refused, naming the field."""
    document = {"rules": [{"id": "r", "role": "buyer", "create_unit": True,
                           "unit": f"Engineering/{part}", "match": {"group": "G"}}]}
    with pytest.raises(InvalidInput) as caught:
        parse_document(document)
    assert "unit path" in str(caught.value)
