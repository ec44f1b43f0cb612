"""Evaluation against the database: grants follow memberships, attributes and rule changes."""

from __future__ import annotations

from sqlalchemy import text

from app.mapping.evaluation import reevaluate_users
from app.models import Membership, User
from app.models.directory import UserStatus
from tests.conftest import OPERATOR, rows

TOKYO_BUYERS = {"rules": [
    {"id": "tokyo-buyers", "priority": 10, "role": "buyer", "unit": "Engineering/Tokyo",
     "match": {"group": "Tokyo Buyers"},
     "parameters": {"spending_limit": {"amount": "5000", "currency": "EUR"}}},
    {"id": "finance", "priority": 5, "role": "finance", "unit": "Engineering",
     "match": {"group": "Finance"}},
]}


def grants_of(world, user_id):
    """(role key, unit path, source) of a user's stored grants."""
    return sorted((r.key, r.path, r.source) for r in rows(
        world.db, "SELECT roles.key, units.path, grants.source FROM grants "
        "JOIN roles ON roles.id = grants.role_id JOIN units ON units.id = grants.unit_id "
        "WHERE grants.user_id = :u", u=user_id))


def test_applying_rules_grants_matching_members(world):
    """Applying a rule set gives members their grants, with parameters and audit/outbox rows."""
    alice = world.user("alice")
    world.user("bob")
    world.group("Tokyo Buyers", [alice])
    summary = world.apply(TOKYO_BUYERS)
    assert summary.totals()["grants_added"] == 1
    assert grants_of(world, alice) == [("buyer", "Engineering/Tokyo", "rule:tokyo-buyers")]
    [grant] = rows(world.db, "SELECT parameters, reason FROM grants")
    params = grant.parameters if isinstance(grant.parameters, dict) else __import__(
        "json").loads(grant.parameters)
    assert params["spending_limit"] == {"amount": "5000", "currency": "EUR"}
    assert [r.action for r in rows(world.db, "SELECT action FROM audit_events "
                                   "WHERE action LIKE 'grant:%'")] == ["grant:add"]
    assert [r.type for r in rows(world.db, "SELECT type FROM outbox_events "
                                 "WHERE type LIKE 'grant.%'")] == ["grant.added"]
    assert [r.action for r in rows(world.db, "SELECT action FROM audit_events "
                                   "WHERE action = 'mapping:apply'")] == ["mapping:apply"]


def test_membership_change_moves_grants(world):
    """Moving a user between groups adds the new grant and removes the old one."""
    alice = world.user("alice")
    buyers = world.group("Tokyo Buyers", [alice])
    finance = world.group("Finance")
    world.apply(TOKYO_BUYERS)
    with world.db.transaction() as s:
        s.delete(s.get(Membership, (buyers, alice)))
        s.add(Membership(group_id=finance, user_id=alice))
        s.flush()
        summary = reevaluate_users(s, world.org_id, [alice], OPERATOR)
    assert (summary.added, summary.removed) == (1, 1)
    assert grants_of(world, alice) == [("finance", "Engineering", "rule:finance")]
    assert [r.type for r in rows(world.db, "SELECT type FROM outbox_events WHERE type LIKE "
                                 "'grant.%' ORDER BY created_at")] == [
        "grant.added", "grant.removed", "grant.added"]


def test_attribute_change_and_derived_unit_creation(world):
    """A department value names a unit under Departments; a missing one is created if allowed."""
    alice = world.user("alice", department="Sales")
    world.apply({"rules": [{"id": "dept", "role": "buyer", "create_unit": True,
                            "unit_from": {"attribute": "department", "under": "Departments"},
                            "match": {"attribute": "department", "present": True}}]})
    assert grants_of(world, alice) == [("buyer", "Departments/Sales", "rule:dept")]
    with world.db.transaction() as s:
        s.get(User, alice).department = "Legal"
        reevaluate_users(s, world.org_id, [alice], OPERATOR)
    assert grants_of(world, alice) == [("buyer", "Departments/Legal", "rule:dept")]
    assert rows(world.db, "SELECT kind FROM units WHERE path = 'Departments/Legal'")[0].kind \
        == "department"
    assert rows(world.db, "SELECT count(*) AS n FROM audit_events WHERE action = 'unit:create' "
                "AND CAST(data AS TEXT) LIKE '%Departments/Legal%'")[0].n == 1


def test_parameter_change_updates_grant(world):
    """A changed override updates the grant in place: grant:update and grant.updated."""
    alice = world.user("alice")
    world.group("Tokyo Buyers", [alice])
    world.apply(TOKYO_BUYERS)
    changed = {"rules": [dict(TOKYO_BUYERS["rules"][0], parameters={
        "spending_limit": {"amount": "7500", "currency": "EUR"}})]}
    result = world.apply(changed)
    assert result.totals()["grants_updated"] == 1
    assert [r.type for r in rows(world.db, "SELECT type FROM outbox_events WHERE type LIKE "
                                 "'grant.%' ORDER BY created_at")] == ["grant.added",
                                                                       "grant.updated"]
    assert rows(world.db, "SELECT count(*) AS n FROM grants")[0].n == 1


def test_manual_grants_are_left_alone(world):
    """Evaluation never removes or overrides an operator's manual grant."""
    alice = world.user("alice")
    world.group("Tokyo Buyers", [alice])
    role, unit = (rows(world.db, "SELECT id FROM roles WHERE key = 'buyer'")[0].id,
                  rows(world.db, "SELECT id FROM units WHERE path = 'Engineering/Tokyo'")[0].id)
    with world.db.transaction() as s:
        from app.models import Grant
        s.add(Grant(organization_id=world.org_id, user_id=alice, unit_id=unit, role_id=role,
                    parameters={}, source="manual", reason={}))
    world.apply(TOKYO_BUYERS)
    world.apply({"rules": []})
    assert grants_of(world, alice) == [("buyer", "Engineering/Tokyo", "manual")]


def test_default_policy_and_loss_policy(world):
    """No matching rule: the default role; losing every grant: the policy's leaver handling."""
    alice, bob = world.user("alice"), world.user("bob")
    world.group("Tokyo Buyers", [alice])
    world.apply({"policy": {"default_role": "quote_only", "default_unit": "Engineering",
                            "on_loss": "suspend"}, **TOKYO_BUYERS})
    assert grants_of(world, bob) == [("quote_only", "Engineering", "default")]
    world.apply({"policy": {"on_loss": "suspend"}, **TOKYO_BUYERS})
    assert grants_of(world, bob) == []
    assert rows(world.db, "SELECT status FROM users WHERE id = :u", u=bob)[0].status \
        == "suspended"
    assert rows(world.db, "SELECT status FROM users WHERE id = :u", u=alice)[0].status == "active"
    world.apply({"policy": {"on_loss": "deprovision"}, "rules": []})
    assert rows(world.db, "SELECT status, active FROM users WHERE id = :u", u=alice)[0] \
        == ("deprovisioned", False)
    assert rows(world.db, "SELECT count(*) AS n FROM audit_events WHERE action = "
                "'user:deprovision'")[0].n == 1


def test_inactive_user_loses_grants_without_leaver_handling(world):
    """A deactivated user's grants go; no second suspension or deprovisioning is recorded."""
    alice = world.user("alice")
    world.group("Tokyo Buyers", [alice])
    world.apply({"policy": {"on_loss": "deprovision"}, **TOKYO_BUYERS})
    with world.db.transaction() as s:
        user = s.get(User, alice)
        user.active, user.status = False, UserStatus.suspended
        reevaluate_users(s, world.org_id, [alice], OPERATOR)
    assert grants_of(world, alice) == []
    assert rows(world.db, "SELECT count(*) AS n FROM audit_events WHERE action LIKE "
                "'user:%'")[0].n == 0


def test_other_organizations_are_untouched(world, other_tenant):
    """Evaluation of one organization never reads or writes another's users."""
    from tests.mapping.conftest import World
    other = World(world.db, other_tenant)
    stranger = other.user("stranger")
    other.group("Tokyo Buyers", [stranger])
    world.apply(TOKYO_BUYERS)
    with world.db.transaction() as s:
        summary = reevaluate_users(s, world.org_id, [stranger], OPERATOR)
    assert summary.users == 0
    assert grants_of(world, stranger) == []


def test_suspended_user_regaining_a_group_is_resumed(world):
    """on_loss=suspend is reversible: a two-step group move suspends, then resumes the user."""
    alice = world.user("alice")
    buyers = world.group("Tokyo Buyers", [alice])
    finance = world.group("Finance")
    world.apply({"policy": {"on_loss": "suspend"}, **TOKYO_BUYERS})
    with world.db.transaction() as s:
        s.delete(s.get(Membership, (buyers, alice)))
        s.flush()
        reevaluate_users(s, world.org_id, [alice], OPERATOR)
    assert rows(world.db, "SELECT status FROM users WHERE id = :u", u=alice)[0].status \
        == "suspended"
    with world.db.transaction() as s:
        s.add(Membership(group_id=finance, user_id=alice))
        s.flush()
        reevaluate_users(s, world.org_id, [alice], OPERATOR)
    assert grants_of(world, alice) == [("finance", "Engineering", "rule:finance")]
    assert rows(world.db, "SELECT status FROM users WHERE id = :u", u=alice)[0].status \
        == "active"
    assert [r.type for r in rows(world.db, "SELECT type FROM outbox_events WHERE type LIKE "
                                 "'user.%' ORDER BY created_at")] == ["user.suspended",
                                                                      "user.resumed"]
    # Suspended after the grants it lost, resumed before those it gains (by outbox id).
    assert [r.type for r in rows(world.db, "SELECT type FROM outbox_events WHERE aggregate_id "
                                 "= :u ORDER BY id", u=alice)][-4:] == [
        "grant.removed", "user.suspended", "user.resumed", "grant.added"]


def test_unit_from_accepts_a_parent_id_and_stores_its_path(world):
    """unit_from.under may name the parent by id; the stored rule names it by path."""
    alice = world.user("alice", department="sales")
    parent = rows(world.db, "SELECT id FROM units WHERE path = 'Departments'")[0].id
    world.apply({"rules": [{"id": "dept", "role": "buyer",
                            "unit_from": {"attribute": "department", "under": parent},
                            "match": {"attribute": "department", "present": True}}]})
    assert grants_of(world, alice) == [("buyer", "Departments/Sales", "rule:dept")]
    [rule] = rows(world.db, "SELECT unit FROM mapping_rules")
    assert "Departments" in str(rule.unit)
    assert parent not in str(rule.unit)


def test_created_units_reuse_existing_parents_whatever_their_case(world):
    """A rule path "engineering/Osaka" creates Osaka under the existing Engineering."""
    alice = world.user("alice")
    world.group("Osaka Buyers", [alice])
    world.apply({"rules": [{"id": "osaka", "role": "buyer", "unit": "engineering/Osaka",
                            "create_unit": True, "match": {"group": "Osaka Buyers"}}]})
    assert grants_of(world, alice) == [("buyer", "Engineering/Osaka", "rule:osaka")]
    assert rows(world.db, "SELECT count(*) AS n FROM units WHERE lower(path) = 'engineering'"
                )[0].n == 1


def test_rule_made_grants_left_by_deleted_rules_are_still_reevaluated(world):
    """With no rules and no default role, users holding a rule-made grant are still
    evaluated (and lose it); others in the same call are skipped cheaply."""
    alice, bob = world.user("alice"), world.user("bob")
    world.group("Tokyo Buyers", [alice])
    world.apply(TOKYO_BUYERS)
    assert grants_of(world, alice) == [("buyer", "Engineering/Tokyo", "rule:tokyo-buyers")]
    with world.db.transaction() as s:
        s.execute(text("DELETE FROM mapping_rules"))
    with world.db.transaction() as s:
        assert reevaluate_users(s, world.org_id, [bob], OPERATOR).removed == 0
        assert reevaluate_users(s, world.org_id, [bob, alice], OPERATOR).removed == 1
    assert grants_of(world, alice) == []
