"""GET /api/v1/audit/verify checks the deprovisioning records stretch by stretch: one
request reads its stretch's share, not every record, and a whole run of stretches, at any
``limit``, finds each changed, removed, added or re-stamped record `roster audit verify`
finds."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.api.conftest import make_key
from tests.conftest import OPERATOR, rows
from tests.lifecycle.support import roster
from tests.scim.support import PATCH_OP, Scim

OFF = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active",
                                               "value": False}]}
LIMITS = (1, 2, 7, 10_000)


def _mass_deprovisioning(client, db, tenant, database_url) -> list:
    """6 of 20 SCIM users deprovisioned: the 5th opens a batch that takes in the earlier
    records (a stamp of several records at once, after theirs); the batch then restored
    (one restored_at stamp per record). Returns the records in the order received."""
    scim = Scim(client, tenant)
    ids = [scim.create_user(f"u{i}@acme.example", externalId=f"00u{i}")["id"]
           for i in range(20)]
    for user_id in ids[:6]:
        assert scim.patch(f"/Users/{user_id}", OFF).status_code == 200
    records = rows(db, "SELECT id, batch_id FROM deprovision_records ORDER BY received_at")
    assert len(records) == 6
    assert records[0].batch_id is not None
    roster(database_url, "lifecycle", "restore", "--batch", records[0].batch_id)
    return records


def _run(client, headers, limit: int,
         carry: bool = True) -> tuple[int, list[dict], list[dict]]:
    """The whole check in stretches of ``limit``: records checked, problems, answers.
    ``carry``: each request gives the previous answer's next_after_time as after_time
    (else the stretch reads where its window starts from the chain)."""
    after, since, checked, problems, answers = 0, None, 0, [], []
    while True:
        query = {"limit": limit, "after_seq": after}
        if carry and since is not None:
            query["after_time"] = since
        response = client.get("/api/v1/audit/verify", query_string=query, headers=headers)
        assert response.status_code == 200, response.json
        body = response.json
        answers.append(body)
        assert body["broken"] is None, body
        checked += body["deprovisioning_records"]["checked"]
        problems += body["deprovisioning_records"]["problems"]
        assert body["ok"] is (not body["deprovisioning_records"]["problems"])
        if body["complete"]:
            assert body["next_after_time"] is None
            return checked, problems, answers
        after, since = body["next_after_seq"], body["next_after_time"]
        assert since is not None


def test_every_stretch_checks_its_share_and_only_that(client, db, tenant, database_url):
    """Untouched: at every limit the stretches together check the 6 records once each,
    with no problem. The last stretch alone (one record of the log) checks none of them:
    it used to read every record, stamp and record event of the organization."""
    _mass_deprovisioning(client, db, tenant, database_url)
    admin = make_key(db, "admin", tenant.org).headers
    for limit in LIMITS:
        checked, problems, _answers = _run(client, admin, limit)
        assert (checked, problems) == (6, []), limit
    [head] = rows(db, "SELECT seq FROM audit_chain_heads WHERE chain = :c", c=tenant.org.id)
    last = client.get(f"/api/v1/audit/verify?limit=1&after_seq={head.seq - 1}",
                      headers=admin).json
    assert last["complete"] is True
    assert last["ok"] is True
    assert last["deprovisioning_records"]["checked"] == 0


TAMPERING = {
    "changed": ("UPDATE deprovision_records SET user_name = 'someone-else' WHERE id = :r",
                "it was changed"),
    "removed": ("DELETE FROM deprovision_records WHERE id = :r", "it was removed"),
    "batch_moved_out": ("UPDATE deprovision_records SET batch_id = NULL WHERE id = :r",
                        "batch_id is None"),
    "restore_undone": ("UPDATE deprovision_records SET restored_at = NULL WHERE id = :r",
                       "restored_at is None"),
    "latency": ("UPDATE deprovision_records SET latency_ms = 1 WHERE id = :r",
                "latency_ms is 1"),
    "stamp_removed": ("UPDATE deprovision_records SET revocation_committed_at = NULL, "
                      "latency_ms = NULL WHERE id = :r", "it was changed"),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
@pytest.mark.parametrize("which", [0, 5])
def test_each_change_is_found_at_every_limit(client, db, tenant, database_url, case, which):
    """A record of the batch (the first, which the batch took in later, or the last)
    changed in the database:
    the CLI names it, and so does the API's run of stretches at every limit, once, with the
    same reason; no other record is named."""
    records = _mass_deprovisioning(client, db, tenant, database_url)
    victim = records[which].id
    statement, reason = TAMPERING[case]
    with db.engine.begin() as conn:
        conn.execute(sa.text(statement), {"r": victim})
    output = roster(database_url, "audit", "verify", "--org", "acme", ok=False).output
    assert f"BAD  deprovisioning record {victim}" in output
    admin = make_key(db, "admin", tenant.org).headers
    for limit in LIMITS:
        _checked, problems, answers = _run(client, admin, limit)
        assert [p["record_id"] for p in problems] == [victim], (limit, problems)
        assert reason in problems[0]["reason"], (limit, problems)
        assert [a["ok"] for a in answers].count(False) == 1, limit


def _forge_copy(db, database_url: str, record_id: str) -> None:
    """Copy a real deprovisioning record under new ids ('forged-id', no audit event names
    it), in the database as someone with its access would; the CLI's verify finds it."""
    columns = [c["name"] for c in sa.inspect(db.engine).get_columns("deprovision_records")]
    # Its position in the log (audit_id) is unique: the copy holds none.
    fresh = {"id": "'forged-id'", "event_id": "'forged-event'", "audit_id": "NULL"}
    copied = ", ".join(fresh.get(c, c) for c in columns)
    with db.engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO deprovision_records ({', '.join(columns)}) "
                             f"SELECT {copied} FROM deprovision_records WHERE id = :r"),
                     {"r": record_id})
    assert "BAD  deprovisioning record forged-id" in roster(
        database_url, "audit", "verify", "--org", "acme", ok=False).output


def test_a_record_added_in_the_database_is_found_at_every_limit(client, db, tenant,
                                                                database_url):
    """A copy of a real record under new ids (no audit event names it): found once by the
    run at every limit, as by the CLI."""
    records = _mass_deprovisioning(client, db, tenant, database_url)
    _forge_copy(db, database_url, records[2].id)
    admin = make_key(db, "admin", tenant.org).headers
    for limit in LIMITS:
        checked, problems, _answers = _run(client, admin, limit)
        assert [(p["record_id"], p["event_id"]) for p in problems] == [("forged-id", None)], \
            limit
        assert "added outside Roster" in problems[0]["reason"]
        assert checked == 7


def test_a_record_added_is_found_once_when_occurred_at_goes_backwards(client, db, tenant,
                                                                     database_url):
    """An event is taken when its change is made and linked into the chain at commit, so a
    transaction open across the deprovisionings links its event after theirs with an
    earlier ``occurred_at``. The stretch windows were (occurred_at at after_seq,
    occurred_at at last_seq]: the stretch after that event started its window before the
    earlier stretches' ended, and a record added in the database then was counted in two
    stretches. The windows run from the latest ``occurred_at`` up to after_seq to the
    latest up to last_seq, a partition of time: at every limit the record is named once,
    and 7 records are checked in all."""
    from app.audit import record

    with db.transaction() as session:
        record(session, organization_id=tenant.org.id, action="organization:note",
               actor=OPERATOR, subject_type="organization", subject_id=tenant.org.id)
        records = _mass_deprovisioning(client, db, tenant, database_url)
    Scim(client, tenant).create_user("late@acme.example")
    events = rows(db, "SELECT seq, occurred_at, action FROM audit_events WHERE chain = :c "
                  "ORDER BY seq", c=tenant.org.id)
    noted = next(i for i, e in enumerate(events) if e.action == "organization:note")
    assert events[noted].occurred_at < events[noted - 1].occurred_at  # it goes backwards
    _forge_copy(db, database_url, records[2].id)
    admin = make_key(db, "admin", tenant.org).headers
    for limit in LIMITS:
        for carry in (True, False):
            checked, problems, _answers = _run(client, admin, limit, carry)
            assert [p["record_id"] for p in problems] == ["forged-id"], (limit, problems)
            assert checked == 7, limit
    # A window start that does not fit after_seq (another answer's, or made up) is a 400.
    first, second = _run(client, admin, 2)[2][:2]
    for after_seq, after_time in ((second["next_after_seq"], first["next_after_time"]),
                                  (0, first["next_after_time"]),
                                  (first["next_after_seq"], "2001-01-01T00:00:00+00:00")):
        refused = client.get("/api/v1/audit/verify", headers=admin, query_string={
            "limit": 2, "after_seq": after_seq, "after_time": after_time})
        assert refused.status_code == 400, refused.json
        assert refused.json["detail"].startswith("after_time is not"), refused.json
