"""Rules matching groups by ``externalId`` (README, Mapping): a group write changing its
externalId re-evaluates its members, as a rename does for rules by displayName. It changed
the group and left every member's grants as the old externalId gave them."""

from __future__ import annotations

import pytest

from tests.mapping.test_scim_e2e import grants
from tests.scim.support import CORE_GROUP, PATCH_OP, Scim

RULES = {"policy": {"on_loss": "nothing"}, "rules": [
    {"id": "ext", "priority": 10, "role": "buyer", "unit": "Engineering/Tokyo",
     "match": {"group": "okta-grp-1", "by": "externalId"}}]}
BUYER = [("buyer", "Engineering/Tokyo", "rule:ext")]


@pytest.fixture
def scim(client, world):
    """A SCIM client for the tenant with units and a rule by externalId."""
    world.apply(RULES)
    return Scim(client, world.tenant)


def _group(scim: Scim, member: str, external_id: str | None) -> str:
    body = {"schemas": [CORE_GROUP], "displayName": "Buyers", "members": [{"value": member}]}
    if external_id is not None:
        body["externalId"] = external_id
    response = scim.post("/Groups", body)
    assert response.status_code == 201
    return response.get_json()["id"]


def test_a_patch_changing_a_groups_external_id_re_evaluates_its_members(world, scim):
    """PATCH replace externalId: the member loses the grant the old externalId gave, and its
    version moves (its access changed); back to the old externalId, the grant is back."""
    ada = scim.create_user("ada@acme.example")["id"]
    group = _group(scim, ada, "okta-grp-1")
    assert grants(world, ada) == BUYER
    before = scim.get(f"/Users/{ada}").headers["ETag"]
    for external_id, expected in (("okta-grp-2", []), ("okta-grp-1", BUYER)):
        response = scim.patch(f"/Groups/{group}", {"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "externalId", "value": external_id}]})
        assert response.status_code == 204
        assert grants(world, ada) == expected, external_id
        after = scim.get(f"/Users/{ada}").headers["ETag"]
        assert after != before
        before = after


def test_a_put_dropping_or_giving_the_external_id_re_evaluates_its_members(world, scim):
    """A PUT without externalId clears it (README): the grant by it goes; a PUT giving it
    one a rule names, same members, gives the grant."""
    ada = scim.create_user("ada@acme.example")["id"]
    group = _group(scim, ada, None)
    assert grants(world, ada) == []
    body = {"schemas": [CORE_GROUP], "displayName": "Buyers", "members": [{"value": ada}]}
    assert scim.put(f"/Groups/{group}", body | {"externalId": "okta-grp-1"}).status_code == 200
    assert grants(world, ada) == BUYER
    assert scim.put(f"/Groups/{group}", body).status_code == 200
    assert grants(world, ada) == []


def test_an_external_id_change_no_rule_sees_moves_no_members_version(world, scim):
    """The members' ``groups`` do not show a group's externalId: a change no rule reads
    leaves their versions alone."""
    ada = scim.create_user("ada@acme.example")["id"]
    group = _group(scim, ada, "other-1")
    before = scim.get(f"/Users/{ada}").headers["ETag"]
    response = scim.patch(f"/Groups/{group}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "externalId", "value": "other-2"}]})
    assert response.status_code == 204
    assert scim.get(f"/Users/{ada}").headers["ETag"] == before
