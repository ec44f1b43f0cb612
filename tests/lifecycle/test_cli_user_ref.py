"""Which user `roster lifecycle deprovision|reactivate USER_REF` acts on, when the
organization has two directories (two IdPs during a migration) each holding the userName.

Before, the command took whichever user the database returned first for the name: a copy
already out answered "already deprovisioned" while the live namesake stayed signed in, or a
user of the other directory was taken out. A userName was also compared case-sensitively,
unlike everywhere else (RFC 7643 §4.1.1).
"""

from __future__ import annotations

from app.directory.directories import create_directory
from app.models import Organization, User
from app.models.directory import UserStatus
from tests.conftest import OPERATOR, rows
from tests.lifecycle.support import roster


def _namesakes(db, tenant) -> tuple[str, str]:
    """alice in the tenant's directory, already deprovisioned, and a live alice in a second
    directory of the same organization (inserted second)."""
    with db.transaction() as s:
        org = s.get(Organization, tenant.org.id)
        entra = create_directory(s, org, "entra", "entra", OPERATOR)
        out = User(directory_id=tenant.directory.id, organization_id=org.id,
                   user_name="alice@acme.example", active=False,
                   status=UserStatus.deprovisioned)
        s.add(out)
        s.flush()
        live = User(directory_id=entra.id, organization_id=org.id,
                    user_name="alice@acme.example")
        s.add(live)
    return out.id, live.id


def test_a_user_name_two_directories_hold_is_refused_naming_both(db, tenant, database_url):
    """Exit 1, one line naming both users; nobody deprovisioned. By id it works."""
    out_id, live_id = _namesakes(db, tenant)
    refused = roster(database_url, "lifecycle", "deprovision", "--org", "acme",
                     "alice@acme.example", ok=False)
    assert "several users of acme are named alice@acme.example" in refused.output
    assert out_id in refused.output
    assert live_id in refused.output
    assert rows(db, "SELECT count(*) FROM deprovision_records")[0][0] == 0
    assert rows(db, "SELECT status FROM users WHERE id = :u", u=live_id)[0][0] == "active"

    done = roster(database_url, "lifecycle", "deprovision", "--org", "acme", live_id)
    assert "deprovisioned (record" in done.output
    assert rows(db, "SELECT status FROM users WHERE id = :u", u=live_id)[0][0] == \
        "deprovisioned"
    refused = roster(database_url, "lifecycle", "reactivate", "--org", "acme",
                     "alice@acme.example", ok=False)
    assert "several users of acme are named" in refused.output


def test_a_user_name_is_found_in_any_case(db, tenant, leaver, database_url):
    """userNames are case-insensitive: `LEAVER` is the user named leaver."""
    out = roster(database_url, "lifecycle", "deprovision", "--org", "acme", "LEAVER").output
    assert "deprovisioned (record" in out
    assert rows(db, "SELECT status FROM users WHERE id = :u", u=leaver.user_id)[0][0] == \
        "deprovisioned"
