"""Checkpoints against someone who can write the whole database, checkpoints included: kept
copies (the export, the audit.checkpoint events) still expose a rewrite, a truncation or a
removed chain, and a checkpoint's key id is never taken on trust."""

from __future__ import annotations

import json

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.api.conftest import make_key
from tests.audit.test_verify import attacker, rewrite_consistently
from tests.lifecycle.support import make_leaver, roster


def _private_pem() -> str:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()


def _export(database_url: str, tmp_path, **env: str):
    path = tmp_path / "kept.jsonl"
    roster(database_url, "audit", "checkpoints", "--org", "acme", "-o", str(path), **env)
    return path


def _verify(database_url: str, *args: str, ok: bool = True, **env: str) -> str:
    return roster(database_url, "audit", "verify", "--org", "acme", *args, ok=ok, **env).output


def test_a_rewrite_with_its_checkpoints_deleted_is_exposed_by_the_kept_copy(
        db, dialect, tenant, database_url, tmp_path):
    """The attacker recomputes every hash and deletes the checkpoints the database held;
    the exported copy still names the head the log no longer has."""
    make_leaver(db, tenant)
    roster(database_url, "audit", "checkpoint")
    kept = _export(database_url, tmp_path)
    [line] = kept.read_text().splitlines()
    assert json.loads(line)["checkpoint"]["chain"] == tenant.org.id
    assert "ok   chain" in _verify(database_url, "--checkpoints", str(kept))
    rewrite_consistently(db, dialect, tenant.org.id)
    with attacker(db, dialect) as conn:
        conn.execute(sa.text("DELETE FROM audit_checkpoints"))
    output = _verify(database_url, "--checkpoints", str(kept), ok=False)
    assert "BAD  chain" in output
    assert "the log was rewritten" in output


def test_a_checkpoint_naming_an_unknown_key_is_not_skipped(db, dialect, tenant, database_url,
                                                           tmp_path):
    """Giving the stored checkpoint a key id nobody knows used to skip its signature check
    (and so hide a rewrite); a former key's checkpoints verify once its public key is
    given with --public-key."""
    former = _private_pem()
    roster(database_url, "audit", "checkpoint", ROSTER_SIGNING__PRIVATE_KEY=former)
    output = _verify(database_url, ok=False)
    assert "names signing key" in output
    public = tmp_path / "former.pem"
    public.write_text(former)  # a private PEM: its public half is used
    assert "ok   chain" in _verify(database_url, "--public-key", str(public))
    with attacker(db, dialect) as conn:
        conn.execute(sa.text("UPDATE audit_checkpoints SET key_id = '0000000000000000'"))
    output = _verify(database_url, "--public-key", str(public), ok=False)
    assert "names signing key '0000000000000000'" in output


def test_checkpoints_reach_the_portal_and_its_copies_expose_truncation_and_removal(
        client, db, dialect, tenant, database_url, tmp_path):
    """Each checkpoint of an organization's chain is an audit.checkpoint event; the feed's
    items, kept as JSON Lines, verify the log, then expose records cut off the end and,
    at last, the whole chain removed."""
    make_leaver(db, tenant)
    roster(database_url, "audit", "checkpoint")
    portal = make_key(db, "portal", tenant.org)
    feed = client.get("/api/v1/events?type=audit.checkpoint", headers=portal.headers)
    [item] = feed.get_json()["items"]
    assert item["data"]["checkpoint"]["chain"] == tenant.org.id
    kept = tmp_path / "feed.jsonl"
    kept.write_text(json.dumps(item) + "\n")
    assert "ok   chain" in _verify(database_url, "--checkpoints", str(kept))

    seq = item["data"]["checkpoint"]["seq"]
    with attacker(db, dialect) as conn:
        conn.execute(sa.text("DELETE FROM audit_checkpoints"))
        conn.execute(sa.text("DELETE FROM audit_events WHERE chain = :c AND seq >= :s"),
                     {"c": tenant.org.id, "s": seq})  # the tail from the signed head on
        prev = conn.execute(sa.text("SELECT seq, hash FROM audit_events WHERE chain = :c "
                                    "ORDER BY seq DESC LIMIT 1"), {"c": tenant.org.id}).one()
        conn.execute(sa.text("UPDATE audit_chain_heads SET seq = :s, hash = :h "
                             "WHERE chain = :c"), {"s": prev.seq, "h": prev.hash,
                                                   "c": tenant.org.id})
    assert "ok   chain" in _verify(database_url)  # alone, the database looks whole
    output = _verify(database_url, "--checkpoints", str(kept), ok=False)
    assert f"signed seq {seq}, which the log no longer holds" in output

    with attacker(db, dialect) as conn:
        conn.execute(sa.text("DELETE FROM audit_events WHERE chain = :c"), {"c": tenant.org.id})
        conn.execute(sa.text("DELETE FROM audit_chain_heads WHERE chain = :c"),
                     {"c": tenant.org.id})
    output = roster(database_url, "audit", "verify", "--checkpoints", str(kept),
                    ok=False).output
    assert f"BAD  chain {tenant.org.id}: first bad record at seq 1" in output
    assert "the whole log was removed" in output


def test_a_checkpoints_file_that_is_not_one_is_a_plain_error(database_url, tenant, tmp_path):
    """A line that is not a kept checkpoint: exit 1 naming the line, no traceback."""
    bad = tmp_path / "bad.jsonl"
    whole = ('{"checkpoint": {"chain": "x", "seq": 1, "hash": "h", "created_at": "t", '
             '"key_id": "k"}, "signature": "s"}')
    bad.write_text(whole + '\n{"nope": 1}\n')
    output = roster(database_url, "audit", "verify", "--checkpoints", str(bad),
                    ok=False).output
    assert "line 2 is not a kept checkpoint" in output
    # A checkpoint without its seq was taken, and read (KeyError) only when checked.
    bad.write_text('{"checkpoint": {"chain": "x"}, "signature": "s"}\n')
    output = roster(database_url, "audit", "verify", "--checkpoints", str(bad),
                    ok=False).output
    assert "line 1 is not a kept checkpoint" in output


def test_a_cut_off_chain_with_kept_checkpoints_is_named_once(db, dialect, tenant, database_url,
                                                             tmp_path):
    """Records cut off the end (the head left as it was) are named, and only that: the kept
    checkpoints of the chain are not reported again as signing a chain the log lacks."""
    make_leaver(db, tenant)
    roster(database_url, "audit", "checkpoint")
    kept = _export(database_url, tmp_path)
    with attacker(db, dialect) as conn:
        last = conn.execute(sa.text("SELECT max(seq) FROM audit_events WHERE chain = :c"),
                            {"c": tenant.org.id}).scalar_one()
        conn.execute(sa.text("DELETE FROM audit_events WHERE chain = :c AND seq = :s"),
                     {"c": tenant.org.id, "s": last})
    output = _verify(database_url, "--checkpoints", str(kept), ok=False)
    bad = [line for line in output.splitlines() if line.startswith("BAD")]
    assert len(bad) == 1, output
    assert "records at the end were removed" in bad[0]
    assert "holds no such chain" not in output


def test_verify_says_how_many_kept_checkpoints_anchored_each_chain(db, tenant, other_tenant,
                                                                   database_url, tmp_path):
    """`verify --checkpoints` names the kept checkpoints it checked a chain against, and says
    so when the file holds none of that chain (another organization's file): the ok line
    was the same as a check against no copy at all."""
    make_leaver(db, tenant)
    roster(database_url, "audit", "checkpoint")
    kept = _export(database_url, tmp_path)
    output = _verify(database_url, "--checkpoints", str(kept))
    assert f"ok   chain {tenant.org.id}" in output
    assert "anchored by 1 kept checkpoint(s), the latest at seq" in output
    other = tmp_path / "globex.jsonl"
    roster(database_url, "audit", "checkpoints", "--org", "globex", "-o", str(other))
    output = _verify(database_url, "--checkpoints", str(other))
    assert f"no kept checkpoint of this chain in {other}" in output
    assert "anchored by" not in _verify(database_url)
