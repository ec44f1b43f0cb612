"""Rules whose unit does not exist yet (create_unit) never stop the IdP's writes: unit paths
are normalised as units are named, one new unit named in two cases is one grant, and a
value no unit name can hold gives no grant. The approver chain stops at a deleted manager.
(Each was a 409, a 500 or a 400 on SCIM writes, found by a bug hunt.)"""

from __future__ import annotations

import pytest

from app.errors import InvalidInput
from app.mapping.ruleset import parse_document
from tests.api.conftest import make_key
from tests.conftest import rows
from tests.mapping.test_scim_e2e import grants
from tests.scim.support import ENTERPRISE, PATCH_OP, Scim, user_body


def _rule(rule_id: str, unit: str, group: str = "Approvers", **extra: object) -> dict:
    return {"id": rule_id, "priority": 1, "role": "technician", "unit": unit,
            "create_unit": True, "match": {"group": group}, **extra}


def _member(world, scim: Scim, name: str, **extra: object) -> str:
    user_id = scim.post("/Users", user_body(name, externalId=name, **extra)).get_json()["id"]
    assert scim.post("/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                 "displayName": "Approvers",
                                 "members": [{"value": user_id}]}).status_code == 201
    return user_id


def test_a_unit_path_with_blank_space_around_its_parts_is_the_trimmed_unit(world, client):
    """'Locations/Osaka ' made the unit 'Locations/Osaka' and then never matched it: every
    later write of the user was a 409. The rule now names the trimmed path."""
    world.apply({"rules": [_rule("osaka", " Locations / Osaka ")]})
    scim = Scim(client, world.tenant)
    bob = _member(world, scim, "bob@acme.example")
    assert grants(world, bob) == [("technician", "Locations/Osaka", "rule:osaka")]
    retitle = {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "title", "value": "Lead"}]}
    assert scim.patch(f"/Users/{bob}", retitle).status_code == 200
    assert grants(world, bob) == [("technician", "Locations/Osaka", "rule:osaka")]


@pytest.mark.parametrize("path", ["Locations//Kyoto", "Locations/ /Kyoto", "/ /"])
def test_a_unit_path_with_an_empty_part_is_refused_naming_the_field(path):
    with pytest.raises(InvalidInput) as refused:
        parse_document({"rules": [_rule("kyoto", path)]})
    assert refused.value.field == "rules[0].unit"
    with pytest.raises(InvalidInput):
        parse_document({"rules": [{**_rule("kyoto", "x"), "unit": None,
                                   "unit_from": {"attribute": "department", "under": path}}]})


def test_one_new_unit_named_in_two_cases_is_one_grant(world, client):
    """Two rules naming 'NewUnit/X' and 'newunit/x' (not there yet) gave two grants for the
    one unit made: a 500 on the SCIM create. The higher priority decides, the other is
    also_matched."""
    world.apply({"rules": [_rule("upper", "NewUnit/X", priority=5),
                           _rule("lower", "newunit/x", priority=1)]})
    scim = Scim(client, world.tenant)
    user = _member(world, scim, "oscar@acme.example")
    assert grants(world, user) == [("technician", "NewUnit/X", "rule:upper")]
    [reason] = rows(world.db, "SELECT reason FROM grants WHERE user_id = :u", u=user)
    assert "lower" in str(reason.reason)


def test_a_value_longer_than_a_unit_name_gives_no_grant_not_an_error(world, client):
    """unit_from with a 300-character locality: the rule leaves the user out, as it does
    for a value holding '/'; the IdP's create succeeds (it was a 400)."""
    world.apply({"rules": [{"id": "site", "role": "technician", "create_unit": True,
                            "unit_from": {"attribute": "locality", "under": "Locations"},
                            "match": {"attribute": "locality", "present": True}}]})
    scim = Scim(client, world.tenant)
    body = user_body("long@acme.example",
                     addresses=[{"type": "work", "locality": "x" * 300}])
    response = scim.post("/Users", body)
    assert response.status_code == 201, response.get_json()
    assert grants(world, response.get_json()["id"]) == []


def test_the_approver_chain_stops_at_a_deleted_manager(world, client, db):
    """SCIM leaves a deleted manager out of its reports; the approver chain did not."""
    scim = Scim(client, world.tenant)
    mona = scim.create_user("mona@acme.example", externalId="mona")["id"]
    carol = scim.create_user("carol@acme.example", externalId="carol",
                             **{ENTERPRISE: {"manager": {"value": mona}}})["id"]
    key = make_key(db, "admin", world.tenant.org)
    chain = client.get(f"/api/v1/users/{carol}/access", headers=key.headers).get_json()
    assert [m["user_name"] for m in chain["approvers"]["managers"]] == ["mona@acme.example"]
    assert scim.delete(f"/Users/{mona}").status_code == 204
    chain = client.get(f"/api/v1/users/{carol}/access", headers=key.headers).get_json()
    assert chain["approvers"]["managers"] == []


def test_patterns_do_not_take_a_trailing_newline(client, db):
    """'$' matches before a final newline: a rule id 'nl\\n' was a rule apart from 'nl'
    (its DELETE 404), and an organization slug could end in a newline."""
    with pytest.raises(InvalidInput):
        parse_document({"rules": [_rule("nl\n", "Engineering")]})
    key = make_key(db, "operator")
    response = client.post("/api/v1/orgs", json={"slug": "nlorg\n"}, headers=key.headers)
    assert response.status_code == 400
    assert rows(db, "SELECT count(*) AS n FROM organizations WHERE slug LIKE 'nlorg%'")[0].n == 0


@pytest.mark.parametrize("create", [False, True])
def test_an_attribute_naming_a_unit_id_names_no_unit_by_that_id(world, client, create):
    """`unit_from` names a unit by the user's value as a path. A value that spelled another
    unit's id (`Engineering/Tokyo`'s, with no `under`) named that unit: the IdP's department
    chose any unit of the tree, past the rule's scope. It names the top-level unit of that
    name now: none (no grant), or one the rule creates."""
    world.apply({"rules": [{"id": "dept", "role": "technician", "create_unit": create,
                            "unit_from": {"attribute": "department"},
                            "match": {"attribute": "department", "present": True}}]})
    [tokyo] = [r.id for r in rows(world.db, "SELECT id FROM units WHERE path = "
                                            "'Engineering/Tokyo'")]
    scim = Scim(client, world.tenant)
    body = user_body("eve@acme.example", **{ENTERPRISE: {"department": tokyo}})
    eve = scim.post("/Users", json=body).get_json()["id"]
    assert grants(world, eve) == ([("technician", tokyo, "rule:dept")] if create else [])
