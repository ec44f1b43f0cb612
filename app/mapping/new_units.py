"""A unit added by an operator gives its grants at once, to the users rules already aim at it.

A rule that names its unit by an attribute (``unit_from = {attribute = "department", under =
"Departments"}``) without ``create_unit`` skips a user whose department has no unit yet
(app/mapping/rules.py ``_target``): that user holds no grant from it, or the policy's
default instead. Adding ``Departments/Marketing`` must then give the Marketing users their
grant, as a rule change would, not only when the IdP next writes each of them.

Only such a rule can newly reach a unit: a unit a rule names by path or id, the ``under``
of a rule and the policy's ``default_unit`` must exist when the rules are applied
(app/mapping/ruleset.py ``_check_unit``), and a ``create_unit`` rule would have made the
unit already for any user it reached. So the organization is re-evaluated (every user, in
the batches of a rule change) exactly when some rule reads units from an attribute directly
under the new unit's parent; otherwise the add writes the unit alone.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.audit import Actor
from app.directory.organizations import PATH_SEPARATOR, add_unit
from app.folding import fold_text
from app.mapping.evaluation import Context, Summary, load_context, organization_batches, run
from app.mapping.locks import own_mapping
from app.models import Organization, Unit


def add_unit_for_rules(session: Session, org: Organization, name: str, kind: str,
                       parent_ref: str | None, actor: Actor) -> tuple[Unit, Summary | None]:
    """Add a unit (``add_unit``), then re-evaluate the organization if a rule may now grant
    in it; the summary of that pass, or None when no rule can reach the unit.

    The mapping lock is held exclusively first, as by a rule-set apply (app/mapping/locks.py,
    before any row lock): no write evaluates grants with the old unit tree meanwhile, and
    none commits a user the pass would miss.
    """
    own_mapping(session, org.id)
    unit = add_unit(session, org, name, kind, parent_ref, actor)  # flushed: its path known
    ctx = load_context(session, org)
    if not reaches(ctx, unit.path):
        return unit, None
    return unit, run(session, ctx, organization_batches(session, org.id), actor)


def reaches(ctx: Context, path: str) -> bool:
    """Whether a rule of ``ctx`` may name the unit at ``path`` by a user's attribute: the
    unit is directly under the rule's ``under`` (at the top when it has none)."""
    parent = path.rpartition(PATH_SEPARATOR)[0]
    for rule in ctx.rules:
        target = rule.unit
        if rule.disabled or not target.from_attribute or target.create:
            continue
        if fold_text(target.under or "") == fold_text(parent):
            return True
    return False
