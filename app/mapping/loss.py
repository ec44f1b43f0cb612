"""Whether the mapping takes out a user that holds no grant (``on_loss`` ``deprovision`` or
``suspend``): what decides if the IdP's ``active: true`` for a user that lost its grants
brings it back active or suspended (app.directory.users.replace_user; README,
"Deprovisioning")."""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app.mapping.storage import load_policy
from app.models import Grant, Organization, User

TAKING_OUT = ("deprovision", "suspend")


def left_without_grants(session: Session, user: User) -> bool:
    """Whether ``user`` holds no grant now (rule-made or manual) and its organization
    deprovisions or suspends a user that loses every grant."""
    org = session.get(Organization, user.organization_id)
    if org is None or load_policy(org).on_loss not in TAKING_OUT:
        return False
    session.flush()
    return not session.scalar(select(exists().where(Grant.user_id == user.id)))
