"""Units that one evaluation run (a SCIM write, a login, a rule-set apply or preview) makes.

A ``create_unit`` rule makes the unit a user's attribute names when it is missing. Two
bounds on that, settled here for the whole run, user after user in id order:

- One unit per path in any case: users of one run naming ``Marketing`` and ``marketing``
  share the unit the first of them makes, spelled as that one spelled it; the apply and
  preview answers show that path for both, and ``creates_unit`` for the first only.
- At most ``[mapping] max_units`` units in the organization: every evaluation loads all of
  them (app/mapping/evaluation.py ``load_context``), so an IdP sending 100,000 distinct
  departments must not make 100,000 units. Past the bound the rule makes no unit and gives
  the user nothing (other rules, or the policy's default, still may); the run reports it
  (``report_refused``): a warning in the log and a ``unit:create_refused`` audit event.
"""

from __future__ import annotations

import functools
import logging
import weakref
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.directory.organizations import PATH_SEPARATOR, ensure_unit
from app.folding import fold_text
from app.mapping.rules import UnitIndex, UnitPlanner
from app.models import Organization
from app.settings import load_settings

log = logging.getLogger("roster.mapping")
LISTED = 20  # refused units named in the audit event and the log line
_cap_by_engine: weakref.WeakKeyDictionary[Engine, int] = weakref.WeakKeyDictionary()


def configure_unit_cap(engine: Engine, max_units: int) -> None:
    """The bound on units rules make, for sessions on ``engine``; ``create_app`` sets it
    from ``[mapping] max_units``."""
    _cap_by_engine[engine] = max_units


@functools.cache
def _cap_from_environment() -> int:
    max_units: int = load_settings()["mapping"]["max_units"]
    return max_units


def unit_cap(session: Session) -> int:
    """The bound configured for the session's engine, else the deployment's setting."""
    found = _cap_by_engine.get(session.get_bind().engine)
    return _cap_from_environment() if found is None else found


@dataclass
class Refusal:
    """A unit a rule would have made, past the bound: which rule, how many users."""

    path: str
    rule: str
    users: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON form (preview and apply answers, audit data)."""
        return {"unit": self.path, "rule": self.rule, "users": self.users}


@dataclass
class UnitPlan:
    """New units of one run: by folded path, the path as first planned (so made)."""

    limit: int
    existing: int  # the organization's units when the run began
    planned: dict[str, str] = field(default_factory=dict)
    refused: dict[tuple[str, str], Refusal] = field(default_factory=dict)

    def planner(self, units: UnitIndex) -> UnitPlanner:
        """The ``UnitPlanner`` for one user (app/mapping/rules.py), on today's units."""
        return lambda path, rule_id: self.settle(units, path, rule_id)

    def settle(self, units: UnitIndex, path: str, rule_id: str) -> tuple[str, bool] | None:
        """(path as it will be made, whether this asker makes it), or None past the bound."""
        made: str | None = None
        new: dict[str, str] = {}
        for name in path.split(PATH_SEPARATOR):
            step = f"{made}{PATH_SEPARATOR}{name}" if made else name
            found = units.find_path(step)
            key = fold_text(step)
            if found is not None:
                made = found[1]
            elif key in self.planned:
                made = self.planned[key]
            else:
                new[key] = made = step
        if not new:
            return made, False
        if self.existing + len(self.planned) + len(new) > self.limit:
            refusal = self.refused.setdefault((fold_text(made), rule_id), Refusal(made, rule_id))
            refusal.users += 1
            return None
        self.planned.update(new)
        return made, True

    def refusals(self) -> list[dict[str, Any]]:
        """The refused units, by path then rule."""
        return [r.as_dict() for _, r in sorted(self.refused.items())]


def report_refused(session: Session, org: Organization, plan: UnitPlan, actor: Actor) -> None:
    """Tell the organization's admins that rules asked for units past the bound: one
    ``unit:create_refused`` audit event per run (in its transaction) and a log warning."""
    if not plan.refused:
        return
    refused = plan.refusals()
    data = {"max_units": plan.limit, "units_refused": len(refused),
            "users": sum(r["users"] for r in refused), "refused": refused[:LISTED]}
    record(session, organization_id=org.id, action="unit:create_refused", actor=actor,
           subject_type="organization", subject_id=org.id, data=data)
    log.warning("rules asked for %d new unit(s) past [mapping] max_units (%d) in "
                "organization %s; no unit made, those rules gave no grant: %s",
                len(refused), plan.limit, org.slug,
                ", ".join(f"{r['unit']} ({r['rule']})" for r in refused[:LISTED]))


def ensure_grant_unit(session: Session, org: Organization, units: UnitIndex, path: str,
                      kind: str, actor: Actor) -> tuple[UnitIndex, str, str]:
    """The units with ``path`` made (its missing parts, planned by ``UnitPlan``), then the
    unit's id and path: each part found in any case, else added (``ensure_unit``)."""
    parent: str | None = None
    for name in path.split(PATH_SEPARATOR):
        step = f"{parent}{PATH_SEPARATOR}{name}" if parent else name
        found = units.find_path(step)
        if found is None:
            unit = ensure_unit(session, org, name, kind, parent, actor)
            units = UnitIndex.of({**units.by_path, unit.path: unit.id})
            found = (unit.id, unit.path)
        parent = found[1]
    assert parent is not None
    return units, units.by_path[parent], parent
