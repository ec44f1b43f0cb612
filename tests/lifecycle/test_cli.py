"""`roster lifecycle deprovision|reactivate` (the operator trigger) and their error lines."""

from __future__ import annotations

import json

from tests.conftest import rows
from tests.lifecycle.support import add_user, roster


def _data(value):
    return value if isinstance(value, dict) else json.loads(value)


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
    assert "already active" in roster(database_url, "lifecycle", "reactivate", "--org",
                                      "acme", "leaver").output


def test_operator_reason_is_kept_on_the_record_and_in_the_audit_log(db, tenant, leaver,
                                                                   database_url):
    """--reason lands on the deprovisioning record and in both audit events."""
    roster(database_url, "lifecycle", "deprovision", "--org", "acme", "leaver",
           "--reason", "  left 2026-12-01, ticket HR-7 ")
    [rec] = rows(db, "SELECT reason, trigger FROM deprovision_records")
    assert (rec.reason, rec.trigger) == ("left 2026-12-01, ticket HR-7", "operator")
    roster(database_url, "lifecycle", "reactivate", "--org", "acme", "leaver",
           "--reason", "rehired")
    reasons = {r.action: _data(r.data).get("reason") for r in rows(
        db, "SELECT action, data FROM audit_events WHERE subject_id = :u", u=leaver.user_id)}
    assert reasons["user:deprovision"] == "left 2026-12-01, ticket HR-7"
    assert reasons["user:reactivate"] == "rehired"


def test_a_blank_or_overlong_reason_is_refused_and_changes_nothing(db, tenant, leaver,
                                                                  database_url):
    """--reason must be 1-500 characters, as over the API; nothing is revoked otherwise."""
    for bad in ("   ", "x" * 501):
        result = roster(database_url, "lifecycle", "deprovision", "--org", "acme", "leaver",
                        "--reason", bad, ok=False)
        assert "--reason" in result.output
    assert rows(db, "SELECT count(*) FROM deprovision_records")[0][0] == 0
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


def test_deprovisions_report_p50_is_the_nearest_rank_median(db, tenant, database_url):
    """`roster audit deprovisions` with two deprovisionings gives the smaller latency as p50
    (nearest rank: the ceil(N/2)-th value), not the larger one."""
    for name in ("first", "second"):
        add_user(db, tenant, name)
        roster(database_url, "lifecycle", "deprovision", "--org", "acme", name)
    latencies = sorted(r.latency_ms
                       for r in rows(db, "SELECT latency_ms FROM deprovision_records"))
    out = roster(database_url, "audit", "deprovisions", "--org", "acme", "--since", "7d").output
    assert f"p50 {latencies[0]:.1f} ms" in out
    assert f"p95 {latencies[1]:.1f} ms" in out
