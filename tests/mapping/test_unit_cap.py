"""Units made by `create_unit` rules are bounded by [mapping] max_units, and a run makes one
unit per path in any case, as its preview and apply answers say."""

from __future__ import annotations

import json
import logging

import pytest
from flask import Flask

from app import create_app
from tests.api.conftest import make_key
from tests.conftest import app_overrides, rows
from tests.mapping.conftest import World
from tests.mapping.unit_races import CREATE_UNIT_RULES
from tests.scim.support import ENTERPRISE, Scim

# The world holds 4 units (Engineering, Engineering/Tokyo, Departments, Departments/Sales).
CAP = 6


@pytest.fixture(scope="module")
def capped_app(database_url: str) -> Flask:
    """An app on the suite's database whose rules may make units up to CAP in all."""
    return create_app({**app_overrides(database_url), "mapping": {"max_units": CAP}})


def _data(row_data: object) -> dict:
    return row_data if isinstance(row_data, dict) else json.loads(str(row_data))


def _unit_paths(world: World) -> list[str]:
    return [r.path for r in rows(world.db, "SELECT path FROM units ORDER BY path")]


def _grants(world: World) -> list[tuple[str, str]]:
    return [(r.user_name, r.path) for r in rows(
        world.db, "SELECT users.user_name, units.path FROM grants "
        "JOIN users ON users.id = grants.user_id JOIN units ON units.id = grants.unit_id "
        "ORDER BY users.user_name")]


def test_scim_users_with_many_departments_make_units_up_to_the_bound(capped_app, world,
                                                                     caplog):
    """Five users pushed over SCIM with five new departments, max_units 6: two units are
    made, the other three users are created (201) without a unit or a grant, and each write
    past the bound audits `unit:create_refused` and logs a warning (before: five units, and
    an IdP sending 100,000 departments made 100,000)."""
    world.apply(CREATE_UNIT_RULES)
    scim = Scim(capped_app.test_client(), world.tenant)
    with caplog.at_level(logging.WARNING, logger="roster.mapping"):
        for n in range(1, 6):
            scim.create_user(f"u{n}@acme.example", externalId=f"u{n}",
                             **{ENTERPRISE: {"department": f"Dept{n}"}})
    assert _unit_paths(world) == ["Departments", "Departments/Dept1", "Departments/Dept2",
                                  "Departments/Sales", "Engineering", "Engineering/Tokyo"]
    assert _grants(world) == [("u1@acme.example", "Departments/Dept1"),
                              ("u2@acme.example", "Departments/Dept2")]
    refused = rows(world.db, "SELECT data FROM audit_events "
                             "WHERE action = 'unit:create_refused' ORDER BY seq")
    assert [_data(r.data)["refused"] for r in refused] == [
        [{"unit": f"Departments/Dept{n}", "rule": "dept", "users": 1}] for n in (3, 4, 5)]
    assert _data(refused[0].data)["max_units"] == CAP
    assert sum("max_units" in r.getMessage() and "Departments/Dept4" in r.getMessage()
               for r in caplog.records) == 1


def test_an_existing_unit_still_gives_its_grant_past_the_bound(capped_app, world):
    """At the bound, a user whose department names an existing unit (in another case) still
    gets the grant: only making new units is refused."""
    world.apply(CREATE_UNIT_RULES)
    scim = Scim(capped_app.test_client(), world.tenant)
    for n, dept in enumerate(["A", "B", "C", "sales"]):
        scim.create_user(f"u{n}@acme.example", externalId=f"u{n}",
                         **{ENTERPRISE: {"department": dept}})
    assert _grants(world) == [("u0@acme.example", "Departments/A"),
                              ("u1@acme.example", "Departments/B"),
                              ("u3@acme.example", "Departments/Sales")]


def test_preview_and_apply_list_the_units_not_created(capped_app, world):
    """A rule set whose create_unit rule would make three units past the bound of two: the
    preview and the apply answer list them in `units_not_created` and give those users no
    grant; the apply makes two units only."""
    for n in range(1, 6):
        world.user(f"u{n}@acme.example", department=f"Dept{n}")
    client = capped_app.test_client()
    key = make_key(world.db, "admin", world.tenant.org)
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    preview = client.post(url + ":preview", json=CREATE_UNIT_RULES, headers=key.headers)
    applied = client.put(url, json=CREATE_UNIT_RULES, headers=key.headers)
    made = {p for p in _unit_paths(world) if p.startswith("Departments/Dept")}
    assert len(made) == 2  # which two: users go in id order
    assert len(_unit_paths(world)) == CAP
    refused = [{"unit": f"Departments/Dept{n}", "rule": "dept", "users": 1}
               for n in range(1, 6) if f"Departments/Dept{n}" not in made]
    for res in (preview, applied):
        assert res.status_code == 200, res.json
        assert res.json["units_not_created"] == refused
        assert sorted(g["unit"] for c in res.json["changes"] for g in c["gains"]) == \
            sorted(made)
    assert sorted(path for _, path in _grants(world)) == sorted(made)

@pytest.mark.parametrize("endpoint", ["preview", "apply"])
def test_one_unit_in_two_cases_is_shown_as_made_once(client, world, endpoint):
    """Two users of one apply with departments `Marketing` and `marketing`: one unit is
    made, and the answer shows that unit for both, `creates_unit` for one (before: each
    showed "creates unit" with its own spelling)."""
    world.user("a@acme.example", department="Marketing")
    world.user("b@acme.example", department="marketing")
    key = make_key(world.db, "admin", world.tenant.org)
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    res = (client.post(url + ":preview", json=CREATE_UNIT_RULES, headers=key.headers)
           if endpoint == "preview" else client.put(url, json=CREATE_UNIT_RULES,
                                                    headers=key.headers))
    assert res.status_code == 200, res.json
    # The first user evaluated (in the database's id order) makes it, spelled as theirs.
    maker, other = sorted(res.json["changes"], key=lambda c: not c["gains"][0].get("creates_unit"))
    [made] = maker["gains"]
    spelled = {"a@acme.example": "Departments/Marketing",
               "b@acme.example": "Departments/marketing"}[maker["user_name"]]
    assert (made["unit"], made.get("creates_unit")) == (spelled, True)
    assert [(g["unit"], g.get("creates_unit")) for g in other["gains"]] == [(spelled, None)]
    if endpoint == "apply":
        assert [p for p in _unit_paths(world) if p.lower() == "departments/marketing"] == [
            spelled]
