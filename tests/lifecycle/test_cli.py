"""`roster lifecycle deprovision|reactivate` (the operator trigger) and their error lines."""

from __future__ import annotations

from tests.conftest import rows
from tests.lifecycle.support import roster


def test_operator_deprovisions_and_reactivates_from_the_cli(db, tenant, leaver, database_url):
    """The operator trigger is recorded with the operator as actor; reactivation restores."""
    out = roster(database_url, "lifecycle", "deprovision", "--org", "acme", "leaver").output
    assert "deprovisioned (record" in out
    record = rows(db, "SELECT trigger, actor_type, tokens_revoked FROM deprovision_records")[0]
    assert (record.trigger, record.actor_type, record.tokens_revoked) == ("operator",
                                                                          "operator", 3)
    again = roster(database_url, "lifecycle", "deprovision", "--org", "acme", leaver.user_id)
    assert "already deprovisioned" in again.output
    roster(database_url, "lifecycle", "reactivate", "--org", "acme", "leaver")
    assert rows(db, "SELECT status FROM users WHERE id = :i", i=leaver.user_id)[0][0] == "active"


def test_unknown_user_batch_and_org_are_one_line_errors(db, tenant, database_url):
    """Bad references fail with a message and a non-zero exit, never a traceback."""
    missing = roster(database_url, "lifecycle", "deprovision", "--org", "acme", "nobody",
                     ok=False)
    assert "no user nobody" in missing.output
    assert "no deprovisioning batch" in roster(database_url, "lifecycle", "restore",
                                               "--batch", "nope", ok=False).output
    assert roster(database_url, "audit", "verify", "--org", "no-such-org", ok=False).output
    assert "--since" in roster(database_url, "audit", "deprovisions", "--org", "acme",
                               "--since", "yesterday", ok=False).output
