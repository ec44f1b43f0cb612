"""Effective access and explanations: grants, permissions, parameters, why, approver chain."""

from __future__ import annotations

import pytest

from app.errors import NotFound
from app.mapping.access import effective_access, explain_lines, find_user
from app.models import Organization, User

RULES = {"rules": [
    {"id": "tokyo-buyers", "priority": 10, "role": "buyer", "unit": "Engineering/Tokyo",
     "match": {"all": [{"group": "Tokyo Buyers"}, {"attribute": "country", "value": "JP"}]},
     "parameters": {"spending_limit": {"amount": "5000", "currency": "EUR"}}},
    {"id": "eng-approvers", "priority": 5, "role": "approver", "unit": "Engineering",
     "match": {"group": "Approvers"}},
    {"id": "tokyo-approvers", "priority": 5, "role": "approver", "unit": "Engineering/Tokyo",
     "match": {"group": "Tokyo Approvers"},
     "parameters": {"approval_limit": {"amount": "2000", "currency": "EUR"}}},
]}


@pytest.fixture
def people(world):
    """alice buys in Tokyo; bob is her manager, carol his; dave and erin approve above her."""
    carol = world.user("carol")
    bob = world.user("bob", manager_id=carol)
    alice = world.user("alice", manager_id=bob, display_name="Alice A.",
                       addresses=[{"type": "work", "locality": "Tokyo", "country": "JP"}])
    dave, erin = world.user("dave"), world.user("erin")
    world.group("Tokyo Buyers", [alice])
    world.group("Approvers", [dave])
    world.group("Tokyo Approvers", [erin])
    world.apply(RULES)
    return {"alice": alice, "bob": bob, "carol": carol}


def access_of(world, user_id):
    """effective_access for one user, read in its own transaction."""
    with world.db.transaction() as s:
        return effective_access(s, s.get(User, user_id))


def test_access_lists_grants_with_permissions_parameters_and_reason(world, people):
    """Each grant has its unit path, the role's permissions, effective parameters and why."""
    access = access_of(world, people["alice"])
    [grant] = access["grants"]
    assert grant["unit"]["path"] == "Engineering/Tokyo"
    assert "orders.place" in grant["permissions"]
    assert grant["parameters"] == {"spending_limit": {"amount": "5000", "currency": "EUR"},
                                   "approval_threshold": {"amount": "500.00",
                                                          "currency": "EUR"}}
    why = grant["why"]
    assert (why["kind"], why["rule"], why["priority"]) == ("rule", "tokyo-buyers", 10)
    assert {"attribute": "country", "value": "JP"} in why["matched"]
    assert any(m.get("group") == "Tokyo Buyers" for m in why["matched"])
    assert why["since"]


def test_approver_chain_from_managers_and_approver_grants(world, people):
    """Managers upward, then approvers nearest the user's unit first."""
    chain = access_of(world, people["alice"])["approvers"]
    assert [(m["user_name"], m["level"]) for m in chain["managers"]] == [("bob", 1),
                                                                          ("carol", 2)]
    assert [(a["user_name"], a["unit"]) for a in chain["approvers"]] == [
        ("erin", "Engineering/Tokyo"), ("dave", "Engineering")]
    assert chain["approvers"][0]["approval_limit"] == {"amount": "2000", "currency": "EUR"}


def test_manager_cycles_end(world, people):
    """A manager cycle in the IdP data does not loop."""
    with world.db.transaction() as s:
        s.get(User, people["carol"]).manager_id = people["alice"]
    managers = access_of(world, people["alice"])["approvers"]["managers"]
    assert [m["user_name"] for m in managers] == ["bob", "carol"]


def test_explain_in_words(world, people):
    """The explanation names the role, unit, rule, matched group and attribute, approvers."""
    text = "\n".join(explain_lines(access_of(world, people["alice"])))
    assert "alice (Alice A.) is active and holds 1 grant." in text
    assert "Buyer in Engineering/Tokyo since" in text
    assert 'rule tokyo-buyers (priority 10) because member of group "Tokyo Buyers" and ' \
           'country is "JP"' in text
    assert "spending_limit 5000 EUR" in text
    assert "manager (level 1): bob" in text
    assert "approver in Engineering/Tokyo: erin, approval limit 2000 EUR" in text


def test_find_user_by_name_email_or_id(world, people):
    """Users are found by id or userName; other organizations' users are not."""
    with world.db.transaction() as s:
        org = s.get(Organization, world.org_id)
        assert find_user(s, org, "ALICE").id == people["alice"]
        assert find_user(s, org, people["bob"]).user_name == "bob"
        with pytest.raises(NotFound):
            find_user(s, org, "nobody")


def test_groups_and_access_in_one_query_equal_the_two_queries(world, people):
    """The render query (groups and grants together) gives exactly what the two separate ones
    give, for users with groups and grants, with groups only, and with neither."""
    from app.directory.groups import groups_of_users
    from app.directory.users import access_of_users, groups_and_access

    ids = [people["alice"], people["bob"], world.user("frank")]
    second = world.group("Second", [people["alice"], people["bob"]])
    with world.db.transaction(readonly=True) as s:
        groups, access = groups_and_access(s, ids)
        assert access == access_of_users(s, ids)
        assert {u: sorted(g) for u, g in groups.items()} == \
            {u: sorted(g) for u, g in groups_of_users(s, ids).items()}
    assert len(groups[people["alice"]]) == 2
    assert (second, "Second") in groups[people["bob"]]
    assert access[people["alice"]]["grants"][0]["unitPath"] == "Engineering/Tokyo"
    assert groups[ids[2]] == []
    assert ids[2] not in access


def test_a_page_of_users_brings_the_groups_and_grants_a_single_read_shows(client, world,
                                                                          people):
    """A list page selects each user's groups and grants along with the user (two JSON
    columns, app.directory.users.ATTACHED); what it shows equals a GET of the user, which
    reads them in a query of its own: for a user with two grants and two groups, with
    groups only, and with neither; on the plain, the filtered (prepared), the cursor, the
    later-index and the .search pages."""
    from tests.scim.support import Scim

    scim = Scim(client, world.tenant)
    approvers = scim.get('/Groups?filter=displayName eq "Approvers"').get_json()
    scim.patch(f"/Groups/{approvers['Resources'][0]['id']}", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": people["alice"]}]}]})
    world.group("Second", [people["alice"], people["bob"]])
    world.apply(RULES)
    frank = world.user("frank")
    ids = [people["alice"], people["bob"], frank]
    access = "urn:roster:params:scim:schemas:extension:access:2.0:User"

    def shown(resource: dict) -> tuple:
        return resource.get("groups"), resource.get(access)

    single = {i: shown(scim.get(f"/Users/{i}").get_json()) for i in ids}
    groups, grants = single[people["alice"]]
    assert [g["value"] for g in groups] == sorted(g["value"] for g in groups)  # by id
    assert len(groups) == 3
    assert [(g["unitPath"], g["role"]) for g in grants["grants"]] == [
        ("Engineering", "approver"), ("Engineering/Tokyo", "buyer")]
    assert single[people["bob"]][0]
    assert single[people["bob"]][1] is None
    assert single[frank] == (None, None)

    pages = [scim.get("/Users?count=100").get_json()["Resources"],
             scim.get("/Users?count=100&cursor=").get_json()["Resources"],
             scim.post("/Users/.search", {"count": 100}).get_json()["Resources"]]
    pages += [scim.get(f'/Users?filter=userName eq "{name}"').get_json()["Resources"]
              for name in ("alice", "bob", "frank")]
    pages += [scim.get(f"/Users?startIndex={i}&count=1").get_json()["Resources"]
              for i in range(2, 7)]
    seen = {}
    for page in pages:
        for resource in page:
            seen.setdefault(resource["id"], []).append(shown(resource))
    for user_id in ids:
        assert seen[user_id], user_id
        assert all(s == single[user_id] for s in seen[user_id]), user_id
