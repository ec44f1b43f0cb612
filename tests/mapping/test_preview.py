"""Dry-run previews and the loss guard: who gains and loses what, refusal above the share."""

from __future__ import annotations

import pytest

from app.errors import InvalidInput
from app.mapping.preview import TooManyLosses, preview
from app.mapping.rulefile import read_file
from app.mapping.ruleset import parse_document
from app.models import Organization
from app.settings import ROOT
from tests.conftest import rows

BUYERS = {"rules": [{"id": "buyers", "priority": 1, "role": "buyer", "unit": "Engineering",
                     "match": {"group": "Buyers"}}]}


def counts(world):
    """Rows that a write would have added: grants, grant audit events, grant outbox events."""
    return (rows(world.db, "SELECT count(*) AS n FROM grants")[0].n,
            rows(world.db, "SELECT count(*) AS n FROM audit_events WHERE action LIKE "
                 "'grant:%' OR action = 'mapping:apply'")[0].n,
            rows(world.db, "SELECT count(*) AS n FROM outbox_events")[0].n,
            rows(world.db, "SELECT count(*) AS n FROM mapping_rules")[0].n)


def test_preview_lists_gains_and_losses_and_writes_nothing(world):
    """A preview names each user's gains and losses, with totals, and writes no row."""
    alice, bob = world.user("alice"), world.user("bob")
    world.group("Buyers", [alice])
    world.group("Finance", [bob])
    world.apply(BUYERS)
    before = counts(world)
    proposed = {"rules": [{"id": "fin", "role": "finance", "unit": "Engineering",
                           "match": {"group": "Finance"}},
                          {"id": "new", "role": "buyer", "unit": "Engineering/Osaka",
                           "create_unit": True, "match": {"group": "Finance"}}]}
    with world.db.transaction() as s:
        result = preview(s, s.get(Organization, world.org_id), parse_document(proposed))
    data = result.as_dict()
    expected = {"grants_added": 2, "grants_removed": 1, "users_gaining": 1,
                "users_losing": 1, "users_losing_all": 1, "users_evaluated": 2}
    assert {k: data["totals"][k] for k in expected} == expected
    by_user = {c["user_name"]: c for c in data["changes"]}
    assert by_user["alice"]["loses"][0]["role"] == "buyer"
    assert {g["unit"] for g in by_user["bob"]["gains"]} == {"Engineering", "Engineering/Osaka"}
    assert [g.get("creates_unit") for g in by_user["bob"]["gains"]
            if g["unit"] == "Engineering/Osaka"] == [True]
    assert data["losing_all"] == [{"user_id": alice, "user_name": "alice"}]
    assert counts(world) == before
    assert rows(world.db, "SELECT count(*) AS n FROM units WHERE path = 'Engineering/Osaka'"
                )[0].n == 0


def test_apply_refuses_when_too_many_lose_everything(world):
    """Above max_loss_share the apply is refused, names the users, and changes nothing."""
    users = [world.user(f"user{i}") for i in range(5)]
    world.group("Buyers", users)
    world.apply(BUYERS)
    before = counts(world)
    with pytest.raises(TooManyLosses) as err:
        world.apply({"rules": []}, force=False, share=0.2)
    assert "5 of 5 users (100%, limit 20%)" in err.value.detail
    assert "user0" in err.value.detail
    assert len(err.value.users) == 5
    assert counts(world) == before


def test_apply_within_share_or_forced_goes_through(world):
    """At or under the share, or with force, the rule set is stored and applied."""
    users = [world.user(f"user{i}") for i in range(5)]
    world.group("Buyers", users)
    world.group("Few", users[:4])
    world.apply(BUYERS)
    world.apply({"rules": [dict(BUYERS["rules"][0], match={"group": "Few"})]},
                force=False, share=0.2)                      # 1 of 5 = 20 %: allowed
    assert rows(world.db, "SELECT count(*) AS n FROM grants")[0].n == 4
    world.apply({"rules": []}, force=True, share=0.2)
    assert rows(world.db, "SELECT count(*) AS n FROM grants")[0].n == 0
    assert [r.number for r in rows(world.db, "SELECT number FROM mapping_revisions "
                                   "ORDER BY number")] == [1, 2, 3]


@pytest.mark.parametrize(("document", "message"), [
    ({"rules": [{"id": "x", "role": "pilot", "unit": "Engineering", "match": {"group": "G"}}]},
     "unknown role 'pilot'"),
    ({"rules": [{"id": "x", "role": "buyer", "unit": "Nowhere", "match": {"group": "G"}}]},
     "unit 'Nowhere' does not exist"),
    ({"rules": [{"id": "x", "role": "buyer", "unit": "Engineering", "match": {"group": "G"},
                 "parameters": {"spending_limit": 5}}]}, "expected a money value"),
    ({"rules": [{"id": "x", "role": "buyer", "unit": "Engineering", "match": {"group": "G"},
                 "parameters": {"colour": "red"}}]}, "has no parameter 'colour'"),
    ({"policy": {"default_role": "buyer", "default_unit": "Nowhere"}}, "does not exist"),
])
def test_rule_sets_are_checked_against_the_catalog_and_units(world, document, message):
    """Unknown roles, missing units and badly typed parameters are rejected, nothing stored."""
    with pytest.raises(InvalidInput, match=message):
        world.apply(document)
    assert rows(world.db, "SELECT count(*) AS n FROM mapping_rules")[0].n == 0


def test_example_file_applies(world):
    """config/mapping.example.toml parses, applies, and creates the units it may create."""
    alice = world.user("alice", department="Sales", addresses=[
        {"type": "work", "locality": "Tokyo", "country": "JP"}])
    world.group("Buyers-JP", [alice])
    world.apply(read_file(ROOT / "config" / "mapping.example.toml"))
    got = sorted((r.key, r.path) for r in rows(
        world.db, "SELECT roles.key, units.path FROM grants JOIN roles ON roles.id = "
        "grants.role_id JOIN units ON units.id = grants.unit_id"))
    assert got == [("buyer", "Departments/Sales"), ("buyer", "Locations/Tokyo")]


def test_refusal_undoes_leaver_handling_and_created_units(world):
    """A refused apply leaves no trace: no deprovisioning, no new unit, old rules kept."""
    users = [world.user(f"user{i}") for i in range(3)]
    world.group("Buyers", users)
    world.group("Few", users[:1])
    world.apply({"policy": {"on_loss": "deprovision"}, **BUYERS})
    proposed = {"policy": {"on_loss": "deprovision"}, "rules": [
        {"id": "elsewhere", "role": "buyer", "unit": "Nowhere/New", "create_unit": True,
         "match": {"group": "Few"}}]}
    with pytest.raises(TooManyLosses):
        world.apply(proposed, force=False)
    assert {r.status for r in rows(world.db, "SELECT status FROM users")} == {"active"}
    assert rows(world.db, "SELECT count(*) AS n FROM units WHERE path LIKE 'Nowhere%'"
                )[0].n == 0
    assert [r.key for r in rows(world.db, "SELECT key FROM mapping_rules")] == ["buyers"]
    assert rows(world.db, "SELECT count(*) AS n FROM deprovision_records")[0].n == 0


def test_a_user_deleted_by_scim_is_not_counted_as_evaluated(world, client):
    """A user the IdP deleted stays for the retention, holding nothing; an apply counted it
    among the users evaluated (2 of an organization of 1)."""
    alice, bob = world.user("alice"), world.user("bob")
    world.group("Buyers", [alice, bob])
    response = client.delete(f"/scim/v2/Users/{bob}", headers=world.tenant.headers)
    assert response.status_code == 204
    totals = world.apply(BUYERS).totals()
    assert (totals["users_evaluated"], totals["active_users"], totals["grants_added"]) == (
        1, 1, 1)
