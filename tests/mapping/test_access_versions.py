"""A user's version moves when its effective access (the read-only access extension's
``grants``) changes without a write to the user (RFC 7644 §3.14, RFC 9110 §8.8.3): a
rule-set apply, a rule edit, a unit added that a rule now grants in. The user is not
written, yet what it shows changed, so ``If-None-Match`` with the old ETag must be a 200
with the new grants (not a 304 keeping the old ones), and ``If-Match`` with it a 412."""

from __future__ import annotations

import time
from typing import Any

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register
from tests.api.conftest import make_key
from tests.conftest import rows
from tests.scim.support import ENTERPRISE, PATCH_OP, Scim, assert_error

register()

ACCESS = "urn:roster:params:scim:schemas:extension:access:2.0:User"
BUYERS = {"id": "buyers", "priority": 5, "role": "buyer", "unit": "Engineering",
          "match": {"group": "Buyers"}}
DEPARTMENTS = {"id": "dept", "priority": 1, "role": "technician",
               "unit_from": {"attribute": "department", "under": "Departments"},
               "match": {"attribute": "department", "present": True}}


@pytest.fixture
def scim(client, world) -> Scim:
    """A SCIM client for the tenant with units."""
    return Scim(client, world.tenant)


@pytest.fixture
def admin(world) -> dict[str, str]:
    """Authorization headers of the tenant's admin key."""
    return make_key(world.db, "admin", world.tenant.org).headers


def _read(scim: Scim, user: str, etag: str | None = None) -> tuple[int, str, dict]:
    headers = {"If-None-Match": etag} if etag else {}
    response = scim.get(f"/Users/{user}", headers=headers)
    body = response.get_json() if response.status_code == 200 else {}
    return response.status_code, response.headers["ETag"], body


def _grants(body: dict) -> list[tuple[str, str]]:
    return sorted((g["role"], g["unitPath"]) for g in body.get(ACCESS, {}).get("grants", []))


def _moved(scim: Scim, user: str, before: str) -> tuple[str, dict]:
    """GET with If-None-Match ``before``: a 200 with a new version, then a 304 on it."""
    status, after, body = _read(scim, user, before)
    assert status == 200, "the user's version did not move"
    assert after != before
    assert body["meta"]["version"] == after
    assert _read(scim, user, after)[0] == 304
    return after, body


def _stale_patch_refused(scim: Scim, user: str, etag: str) -> None:
    response = scim.patch(f"/Users/{user}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "displayName", "value": "Stale"}]},
        headers={"If-Match": etag})
    assert_error(response, 412)


def _put_rules(client: Any, world: Any, admin: dict[str, str], *rules: dict) -> None:
    response = client.put(f"/api/v1/orgs/{world.org_id}/mapping?force=true",
                          json={"rules": list(rules), "policy": {"on_loss": "nothing"}},
                          headers=admin)
    assert response.status_code == 200, response.json


def test_a_rule_set_apply_moves_the_versions_of_exactly_the_users_it_changes(
        world, client, scim, admin):
    """PUT /api/v1/orgs/{id}/mapping granting, then revoking: the granted user's old ETag
    gets a 200 with its new grants and a stale If-Match a 412; a user whose grants the
    apply did not change stays 304, and its version the plain ``n``."""
    ada = scim.create_user("ada@acme.example")["id"]
    bob = scim.create_user("bob@acme.example")["id"]
    scim.create_group("Buyers", members=[ada])
    _, ada_before, body = _read(scim, ada)
    _, bob_before, _ = _read(scim, bob)
    assert _grants(body) == []
    before_apply = body["meta"]["lastModified"]
    time.sleep(0.01)
    _put_rules(client, world, admin, BUYERS)
    ada_granted, body = _moved(scim, ada, ada_before)
    assert _grants(body) == [("buyer", "Engineering")]
    _stale_patch_refused(scim, ada, ada_before)
    assert _read(scim, bob, bob_before)[0] == 304
    assert bob_before == 'W/"1"'
    # meta.lastModified moved with it, as rendered and as filtered (RFC 7644 §3.4.2.2).
    assert body["meta"]["lastModified"] > before_apply
    found = scim.get(f'/Users?filter=meta.lastModified gt "{before_apply}"').get_json()
    assert [r["id"] for r in found["Resources"]] == [ada]

    _put_rules(client, world, admin)  # no rule: the grant goes
    _, body = _moved(scim, ada, ada_granted)
    assert _grants(body) == []
    _stale_patch_refused(scim, ada, ada_granted)
    assert _read(scim, bob, bob_before)[0] == 304


def test_an_apply_changing_nothing_keeps_every_version(world, client, scim, admin):
    """The same rule set applied again changes no grant: the ETag stays (304)."""
    ada = scim.create_user("ada@acme.example")["id"]
    scim.create_group("Buyers", members=[ada])
    _put_rules(client, world, admin, BUYERS)
    etag = _read(scim, ada)[1]
    _put_rules(client, world, admin, BUYERS)
    assert _read(scim, ada, etag)[0] == 304


def test_a_parameter_change_keeps_the_version(world, client, scim, admin):
    """A rule whose buyer's spending limit changes updates the grant's parameters, which the
    access extension does not show: the user's ETag stays (304), and a role change after
    it moves it. The version moved with every parameter change."""
    ada = scim.create_user("ada@acme.example")["id"]
    scim.create_group("Buyers", members=[ada])

    def limit(amount: str) -> dict:
        return {**BUYERS, "parameters": {"spending_limit": {"amount": amount,
                                                           "currency": "EUR"}}}

    _put_rules(client, world, admin, limit("500"))
    etag = _read(scim, ada)[1]
    _put_rules(client, world, admin, limit("800"))
    assert "800" in str(rows(world.db, "SELECT parameters FROM grants")[0].parameters)
    assert _read(scim, ada, etag)[0] == 304
    _put_rules(client, world, admin, {**BUYERS, "role": "approver"})
    _, body = _moved(scim, ada, etag)
    assert _grants(body) == [("approver", "Engineering")]


def test_a_unit_added_for_a_rule_moves_the_granted_users_version(world, client, scim, admin):
    """POST /api/v1/orgs/{id}/units re-evaluates users a rule now grants in the new unit
    (app/mapping/new_units.py): their version moves with their new grant."""
    ada = scim.create_user("ada@acme.example", **{ENTERPRISE: {"department": "Marketing"}})
    _put_rules(client, world, admin, DEPARTMENTS)
    _, before, body = _read(scim, ada["id"])
    assert _grants(body) == []  # no Departments/Marketing yet: the rule skips ada
    response = client.post(f"/api/v1/orgs/{world.org_id}/units", headers=admin,
                           json={"name": "Marketing", "kind": "department",
                                 "parent": "Departments"})
    assert response.status_code == 201, response.json
    _, body = _moved(scim, ada["id"], before)
    assert _grants(body) == [("technician", "Departments/Marketing")]


def test_a_user_write_that_changes_grants_moves_the_version_once(world, client, scim, admin):
    """A user PATCH changing its department moves its own version (n + 1) and its grants
    with it: no second bump of the access part for the write's own user."""
    _put_rules(client, world, admin, DEPARTMENTS)
    ada = scim.create_user("ada@acme.example", **{ENTERPRISE: {"department": "Sales"}})
    assert ada["meta"]["version"] == 'W/"1"'
    assert _grants(ada) == [("technician", "Departments/Sales")]
    response = scim.patch(f"/Users/{ada['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": f"{ENTERPRISE}:department", "value": "Engineering"}]})
    assert response.status_code in (200, 204)
    _, etag, body = _read(scim, ada["id"])
    assert etag == 'W/"2"'
    assert _grants(body) == []
    stored = rows(world.db, "SELECT access_version FROM users WHERE id = :u", u=ada["id"])
    assert stored[0].access_version == 0


def test_a_group_write_changing_grants_moves_the_version_once(world, client, scim, admin):
    """A group PATCH adding a member whom a rule then grants: the user's version moves
    (its groups part) and its grants are in the 200; the access counter is not bumped as
    well (one UPDATE of the user for the write, as before)."""
    _put_rules(client, world, admin, BUYERS)
    ada = scim.create_user("ada@acme.example")["id"]
    group = scim.create_group("Buyers")["id"]
    before = _read(scim, ada)[1]
    response = scim.patch(f"/Groups/{group}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": ada}]}]})
    assert response.status_code in (200, 204)
    after, body = _moved(scim, ada, before)
    assert _grants(body) == [("buyer", "Engineering")]
    assert after == 'W/"1.1"'
    stored = rows(world.db, "SELECT access_version FROM users WHERE id = :u", u=ada)
    assert stored[0].access_version == 0


def test_roster_mapping_apply_moves_the_granted_users_version(world, scim, tmp_path):
    """`roster mapping apply` (the CLI) changes grants as the API does: versions move."""
    ada = scim.create_user("ada@acme.example")["id"]
    scim.create_group("Buyers", members=[ada])
    before = _read(scim, ada)[1]
    path = tmp_path / "rules.toml"
    path.write_text('[policy]\non_loss = "nothing"\n\n[[rules]]\nid = "buyers"\n'
                    'priority = 5\nrole = "buyer"\nunit = "Engineering"\n'
                    'match = { group = "Buyers" }\n')
    result = CliRunner().invoke(cli, ["mapping", "apply", str(path), "--org", "acme",
                                      "--force"],
                                env={"ROSTER_DATABASE__URL": world.db.url},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    _, body = _moved(scim, ada, before)
    assert _grants(body) == [("buyer", "Engineering")]


def _deprovisioning_rules(client: Any, world: Any, admin: dict[str, str], *rules: dict) -> None:
    response = client.put(f"/api/v1/orgs/{world.org_id}/mapping?force=true",
                          json={"rules": list(rules), "policy": {"on_loss": "deprovision"}},
                          headers=admin)
    assert response.status_code == 200, response.json


def test_a_user_write_whose_evaluation_deprovisions_moves_the_version_once(
        world, client, scim, admin):
    """A user PATCH moving ada to a department no rule grants in: she loses every grant
    and the policy deprovisions her, all in the PATCH's transaction. One change a client
    sees, one new version: W/"1" -> W/"2" (it went to W/"3", the deprovisioning moving it
    a second time after the write's flush, and W/"2" was never shown)."""
    _deprovisioning_rules(client, world, admin, DEPARTMENTS)
    ada = scim.create_user("ada@acme.example", **{ENTERPRISE: {"department": "Sales"}})
    assert ada["meta"]["version"] == 'W/"1"'
    response = scim.patch(f"/Users/{ada['id']}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": f"{ENTERPRISE}:department", "value": "Nowhere"}]})
    assert response.status_code == 200, response.get_json()
    assert response.headers["ETag"] == 'W/"2"'
    assert response.get_json()["active"] is False
    assert _read(scim, ada["id"])[1] == 'W/"2"'
    assert rows(world.db, "SELECT status FROM users WHERE id = :u",
                u=ada["id"])[0].status == "deprovisioned"


def test_a_rule_set_apply_that_deprovisions_moves_the_version_once(world, client, scim, admin):
    """An apply taking ada's only grant away deprovisions her: her own version moves
    (active is false now), and her access part, which it already covers, stays (both
    moved: W/"1.2" -> W/"2.3", two counters for one change)."""
    ada = scim.create_user("ada@acme.example")["id"]
    scim.create_group("Buyers", members=[ada])
    _deprovisioning_rules(client, world, admin, BUYERS)
    _, before, body = _read(scim, ada)
    assert before == 'W/"1.2"'
    assert _grants(body) == [("buyer", "Engineering")]
    _deprovisioning_rules(client, world, admin)
    after, body = _moved(scim, ada, before)
    assert after == 'W/"2.2"'
    assert body["active"] is False
    assert _grants(body) == []


def test_a_group_write_that_deprovisions_a_member_moves_one_part_of_its_version(
        world, client, scim, admin):
    """A group PATCH removing ada from her last mapped group: the policy deprovisions her
    in the PATCH's transaction. Her own version moves (active is false now), and her groups
    part, which that already covers, stays: W/"1.2" -> W/"2.2" (it went to W/"2.3", two
    parts for one change a client sees)."""
    ada = scim.create_user("ada@acme.example")["id"]
    group = scim.create_group("Buyers", members=[ada])["id"]
    _deprovisioning_rules(client, world, admin, BUYERS)
    _, before, body = _read(scim, ada)
    assert before == 'W/"1.2"'
    assert _grants(body) == [("buyer", "Engineering")]
    response = scim.patch(f"/Groups/{group}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "remove", "path": f'members[value eq "{ada}"]'}]})
    assert response.status_code in (200, 204), response.get_json()
    after, body = _moved(scim, ada, before)
    assert after == 'W/"2.2"'
    assert body["active"] is False
    assert body.get("groups", []) == []
    assert _grants(body) == []
    assert rows(world.db, "SELECT status FROM users WHERE id = :u",
                u=ada)[0].status == "deprovisioned"


def test_a_group_write_that_keeps_a_member_moves_its_groups_part(world, client, scim, admin):
    """The control: bob loses one of two mapped groups, keeps a grant and stays active; his
    groups part moves (his ``groups`` changed) and his own version stays."""
    bob = scim.create_user("bob@acme.example")["id"]
    buyers = scim.create_group("Buyers", members=[bob])["id"]
    scim.create_group("Approvers", members=[bob])
    approvers = {"id": "approvers", "priority": 6, "role": "approver", "unit": "Engineering",
                 "match": {"group": "Approvers"}}
    _deprovisioning_rules(client, world, admin, BUYERS, approvers)
    _, before, _ = _read(scim, bob)
    response = scim.patch(f"/Groups/{buyers}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "remove", "path": f'members[value eq "{bob}"]'}]})
    assert response.status_code in (200, 204), response.get_json()
    own, other = before.strip('W/"').split(".")
    after, body = _moved(scim, bob, before)
    assert after == f'W/"{own}.{int(other) + 1}"'
    assert body["active"] is True
