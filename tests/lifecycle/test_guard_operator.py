"""An operator's deprovisioning stays out of the mass-event guard's batches.

A batch exists to undo an IdP misconfiguration in one command (`roster lifecycle restore
--batch`). It took every deprovisioning of its directory's window, an operator's too: the
security team's deprovisioning of a compromised account (the IdP still has it active) joined
the batch of an unrelated Okta misfire, and restoring that batch gave the account back its
access. An operator's deprovisioning is deliberate: it neither counts towards the thresholds
nor joins a batch, so no batch restore undoes it.
"""

from __future__ import annotations

from tests.api.conftest import make_key
from tests.conftest import rows
from tests.lifecycle.support import add_user, equip, roster
from tests.scim.support import PATCH_OP, Scim

OFF = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}


def _operator_deprovisions(client, db, user_id: str) -> str:
    key = make_key(db, "operator")
    answer = client.post(f"/api/v1/users/{user_id}/deprovision", headers=key.headers,
                         json={"reason": "credentials stolen, SEC-9"})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()["id"]


def _idp_misfire(client, tenant, user_ids: list[str]) -> None:
    scim = Scim(client, tenant)
    for user_id in user_ids:
        assert scim.patch(f"/Users/{user_id}", OFF).status_code == 200


def test_a_batch_restore_never_gives_back_an_operators_deprovisioning(client, db, tenant,
                                                                      database_url):
    """The operator took one user out just before, and another during, an IdP burst that
    opened a batch: neither is in the batch, and its restore leaves both out."""
    ids = [add_user(db, tenant, f"u{i}") for i in range(20)]
    compromised, later = ids[0], ids[1]
    equip(db, tenant, compromised)
    before = _operator_deprovisions(client, db, compromised)

    _idp_misfire(client, tenant, ids[2:8])
    during = _operator_deprovisions(client, db, later)

    [batch] = rows(db, "SELECT id, count FROM deprovision_batches")
    assert batch.count == 6
    batched = {r.user_id for r in rows(db, "SELECT user_id FROM deprovision_records "
                                           "WHERE batch_id = :b", b=batch.id)}
    assert batched == set(ids[2:8])
    assert rows(db, "SELECT batch_id FROM deprovision_records WHERE id IN (:a, :b)",
                a=before, b=during) == [(None,), (None,)]

    out = roster(database_url, "lifecycle", "restore", "--batch", batch.id).output
    assert "6 user(s) reactivated" in out
    for user_id in (compromised, later):
        assert rows(db, "SELECT status, active FROM users WHERE id = :u", u=user_id)[0] == \
            ("deprovisioned", False)
    assert rows(db, "SELECT count(*) FROM grants WHERE user_id = :u", u=compromised)[0][0] == 0


def test_operator_deprovisionings_alone_open_no_batch(client, db, tenant):
    """Six operator deprovisionings of twenty users: no batch, no mass-deprovision alert."""
    ids = [add_user(db, tenant, f"u{i}") for i in range(20)]
    for user_id in ids[:6]:
        _operator_deprovisions(client, db, user_id)
    assert rows(db, "SELECT count(*) FROM deprovision_batches")[0][0] == 0
    assert rows(db, "SELECT count(*) FROM outbox_events WHERE type = "
                    "'directory.mass_deprovision'")[0][0] == 0
