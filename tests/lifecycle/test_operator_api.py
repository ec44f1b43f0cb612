"""Operator deprovisioning and reactivation through /api/v1 (trigger ``operator``)."""

from __future__ import annotations

import json

from tests.api.conftest import make_key
from tests.api.test_frame import assert_problem
from tests.conftest import rows

DEPROVISION = "/api/v1/users/{}/deprovision"
REACTIVATE = "/api/v1/users/{}/reactivate"


def _data(value):
    return value if isinstance(value, dict) else json.loads(value)


def test_operator_key_deprovisions_a_user_at_once(client, db, tenant, leaver):
    """201 with the record: trigger operator, the key as actor, everything revoked, the
    reason on the record, its receipt and the audit event; the commit stamp and latency
    follow."""
    key = make_key(db, "operator")
    response = client.post(DEPROVISION.format(leaver.user_id), headers={
        **key.headers, "X-Request-ID": "op-req-1", "User-Agent": "ops-console/2"},
        json={"reason": "left the company, ticket HR-12"})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert (body["user_id"], body["trigger"], body["actor_type"], body["actor_id"]) == (
        leaver.user_id, "operator", "api_key", key.id)
    assert (body["request_id"], body["user_agent"]) == ("op-req-1", "ops-console/2")
    assert body["reason"] == "left the company, ticket HR-12"
    assert (body["sessions_revoked"], body["tokens_revoked"], body["grants_removed"]) == (
        2, 3, 2)
    [user] = rows(db, "SELECT status, active FROM users WHERE id = :u", u=leaver.user_id)
    assert (user.status, bool(user.active)) == ("deprovisioned", False)
    assert rows(db, "SELECT count(*) FROM issued_tokens WHERE user_id = :u AND revoked_at "
                    "IS NULL", u=leaver.user_id)[0][0] == 0
    [audit] = rows(db, "SELECT actor_type, actor_id, request_id, data FROM audit_events "
                       "WHERE action = 'user:deprovision' AND subject_id = :u", u=leaver.user_id)
    assert (audit.actor_type, audit.actor_id, audit.request_id) == ("api_key", key.id,
                                                                    "op-req-1")
    assert _data(audit.data)["reason"] == "left the company, ticket HR-12"
    assert rows(db, "SELECT count(*) FROM outbox_events WHERE type = 'user.deprovisioned' "
                    "AND aggregate_id = :u", u=leaver.user_id)[0][0] == 1
    stored = client.get(f"/api/v1/deprovisions/{body['id']}", headers=key.headers).get_json()
    assert stored["revocation_committed_at"] is not None
    assert stored["latency_ms"] >= 0
    assert stored["reason"] == "left the company, ticket HR-12"
    receipt = client.get(f"/api/v1/deprovisions/{body['id']}/receipt",
                         headers=key.headers).get_json()
    assert receipt["receipt"]["record"]["reason"] == "left the company, ticket HR-12"


def test_deprovisioning_twice_is_a_conflict_problem(client, db, tenant, leaver):
    """The second call changes nothing and answers 409 problem JSON."""
    key = make_key(db, "operator")
    assert client.post(DEPROVISION.format(leaver.user_id), headers=key.headers).status_code \
        == 201
    assert_problem(client.post(DEPROVISION.format(leaver.user_id), headers=key.headers), 409,
                   "conflict")
    assert rows(db, "SELECT count(*) FROM deprovision_records")[0][0] == 1


def test_admin_of_the_organization_may_act_others_may_not(client, db, tenant, other_tenant,
                                                          leaver):
    """Auditor and portal keys: 403; another organization's admin: 404; own admin: 201."""
    url = DEPROVISION.format(leaver.user_id)
    for role in ("auditor", "portal"):
        assert_problem(client.post(url, headers=make_key(db, role, tenant.org).headers), 403,
                       "forbidden")
    stranger = make_key(db, "admin", other_tenant.org)
    assert_problem(client.post(url, headers=stranger.headers), 404, "not-found")
    assert_problem(client.post(REACTIVATE.format(leaver.user_id), headers=stranger.headers),
                   404, "not-found")
    assert rows(db, "SELECT status FROM users WHERE id = :u", u=leaver.user_id)[0][0] == \
        "active"
    admin = make_key(db, "admin", tenant.org)
    assert client.post(url, headers=admin.headers).status_code == 201


def test_reactivation_gives_back_manual_grants_with_the_same_id(client, db, tenant, leaver):
    """Reactivate: 200, same user, the manual grant restored, user.reactivated; then 409."""
    key = make_key(db, "operator")
    client.post(DEPROVISION.format(leaver.user_id), headers=key.headers)
    response = client.post(REACTIVATE.format(leaver.user_id), headers=key.headers,
                           json={"reason": "rehired"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["user_id"], body["status"], body["active"]) == (leaver.user_id, "active",
                                                                 True)
    assert len(body["manual_grants_restored"]) == 1
    assert body["record_id"] == rows(db, "SELECT id FROM deprovision_records")[0][0]
    assert [g.source for g in rows(db, "SELECT source FROM grants WHERE user_id = :u",
                                   u=leaver.user_id)] == ["manual"]
    [audit] = rows(db, "SELECT actor_id, data FROM audit_events WHERE action = "
                       "'user:reactivate'")
    assert (audit.actor_id, _data(audit.data)["reason"]) == (key.id, "rehired")
    assert rows(db, "SELECT count(*) FROM outbox_events WHERE type = 'user.reactivated'"
                )[0][0] == 1
    # The portal hears of the reactivation before the grants it gives back (a consumer that
    # ignores grants of a user it holds as gone stays right).
    events = [r.type for r in rows(db, "SELECT type FROM outbox_events WHERE aggregate_id = :u "
                                       "ORDER BY id", u=leaver.user_id)]
    assert events[-2:] == ["user.reactivated", "grant.added"], events
    assert_problem(client.post(REACTIVATE.format(leaver.user_id), headers=key.headers), 409,
                   "conflict")


def test_unknown_user_and_bad_input_are_problems_and_change_nothing(client, db, tenant,
                                                                   leaver):
    """404 for an unknown id; 400 naming the field for an unknown or too long field."""
    key = make_key(db, "operator")
    assert_problem(client.post(DEPROVISION.format("no-such-user"), headers=key.headers), 404,
                   "not-found")
    for body, field in (({"why": "x"}, "why"), ({"reason": "x" * 501}, "reason"),
                        ({"reason": 5}, "reason")):
        problem = assert_problem(client.post(DEPROVISION.format(leaver.user_id),
                                             headers=key.headers, json=body), 400, "validation")
        assert [e["field"] for e in problem["errors"]] == [field]
    assert_problem(client.post(DEPROVISION.format(leaver.user_id), headers=key.headers,
                               data="{", content_type="application/json"), 400, "validation")
    assert rows(db, "SELECT count(*) FROM deprovision_records")[0][0] == 0
    assert rows(db, "SELECT status FROM users WHERE id = :u", u=leaver.user_id)[0][0] == \
        "active"


def test_openapi_documents_both_routes_with_their_permission(client):
    """The public description lists the routes, the permission and the 201 / 409 answers."""
    paths = client.get("/api/v1/openapi.json").get_json()["paths"]
    deprovision = paths["/api/v1/users/{user_id}/deprovision"]["post"]
    reactivate = paths["/api/v1/users/{user_id}/reactivate"]["post"]
    for operation in (deprovision, reactivate):
        assert operation["x-permission"] == "deprovisioning:write"
        assert "409" in operation["responses"]
        assert "404" in operation["responses"]
    assert "201" in deprovision["responses"]
    assert "200" in reactivate["responses"]


def test_a_user_the_mapping_suspended_is_not_reactivated_by_an_operator(
        client, db, tenant, leaver, database_url):
    """A mapping suspension (on_loss = "suspend": the user lost every grant) is not a
    deprovisioning: reactivating it set the user active with no grant and its paused tokens
    worked again, around the mapping. 409 through the API and an error line from the CLI;
    the user stays suspended, nothing is recorded."""
    from tests.lifecycle.support import roster

    with db.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE users SET status = 'suspended' WHERE id = ?"
                                   if db.dialect == "sqlite" else
                                   "UPDATE users SET status = 'suspended' WHERE id = %s",
                                   (leaver.user_id,))
    key = make_key(db, "operator")
    response = client.post(REACTIVATE.format(leaver.user_id), headers=key.headers)
    assert_problem(response, 409, "conflict")
    assert "suspended by the mapping" in response.get_json()["detail"]
    cli = roster(database_url, "lifecycle", "reactivate", "--org", "acme", "leaver", ok=False)
    assert cli.exit_code == 1
    assert "suspended by the mapping" in cli.output
    assert rows(db, "SELECT status, active FROM users WHERE id = :u", u=leaver.user_id) \
        == [("suspended", True)]
    assert rows(db, "SELECT count(*) FROM audit_events WHERE action = 'user:reactivate'"
                )[0][0] == 0


def test_a_blank_reason_is_refused_and_a_reason_is_kept_trimmed(client, db, tenant, leaver):
    """The API reads a reason as `roster lifecycle deprovision --reason` does: trimmed, and
    whitespace only is a 400 with nothing written (it was signed into the record and its
    receipt as it came)."""
    key = make_key(db, "operator")
    for blank in ("   ", "\t\n"):
        response = client.post(DEPROVISION.format(leaver.user_id), headers=key.headers,
                               json={"reason": blank})
        assert_problem(response, 400, "validation")
        assert response.get_json()["errors"][0]["field"] == "reason"
    assert rows(db, "SELECT count(*) FROM deprovision_records")[0][0] == 0
    response = client.post(DEPROVISION.format(leaver.user_id), headers=key.headers,
                           json={"reason": "  left, HR-12 "})
    assert response.status_code == 201, response.get_json()
    assert rows(db, "SELECT reason FROM deprovision_records")[0][0] == "left, HR-12"
    response = client.post(REACTIVATE.format(leaver.user_id), headers=key.headers,
                           json={"reason": " "})
    assert_problem(response, 400, "validation")
    assert rows(db, "SELECT status FROM users WHERE id = :u", u=leaver.user_id)[0][0] \
        == "deprovisioned"
