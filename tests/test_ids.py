"""Identifiers from buffered OS randomness (app/ids.py)."""

from __future__ import annotations

import os
import uuid

from app import ids


def test_ids_are_version_4_uuids_and_unique_across_draws():
    """Every id is an RFC 9562 version 4 UUID (version and variant bits set); ten thousand
    of them, spanning many 4 KiB draws, are all different."""
    drawn = [ids.random_uuid() for _ in range(10_000)]
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in drawn)
    assert len(set(drawn)) == len(drawn)
    text = ids.new_id()
    assert str(uuid.UUID(text)) == text
    assert len(ids.request_id()) == 32
    assert int(ids.request_id(), 16) >= 0


def test_a_draw_serves_256_ids_with_one_read(monkeypatch):
    """os.urandom is read 4 KiB at a time: 256 ids, then the next read."""
    reads: list[int] = []
    real = os.urandom

    def counting(n: int) -> bytes:
        reads.append(n)
        return real(n)

    monkeypatch.setattr(ids.os, "urandom", counting)
    ids._reset()
    for _ in range(256):
        ids.random_uuid()
    assert reads == [4096]
    ids.random_uuid()
    assert reads == [4096, 4096]


def test_a_forked_child_never_repeats_its_parents_ids():
    """The child starts with an empty buffer: its next ids are not the parent's next ids."""
    ids.random_uuid()  # the parent's buffer holds unused bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, "".join(ids.new_id() for _ in range(4)).encode())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 4096).decode()
    os.close(read)
    os.waitpid(pid, 0)
    parent = "".join(ids.new_id() for _ in range(4))
    assert len(child) == len(parent) == 4 * 36
    assert child != parent


def test_ids_as_text_are_version_4_uuids_in_their_canonical_form():
    """new_id and request_id set the version and variant bits themselves: each is the text
    uuid.UUID gives for it (lower-case 8-4-4-4-12, or 32 digits), version 4, RFC variant."""
    for _ in range(2_000):
        text, digits = ids.new_id(), ids.request_id()
        parsed, parsed_hex = uuid.UUID(text), uuid.UUID(hex=digits)
        assert str(parsed) == text
        assert parsed_hex.hex == digits
        assert parsed.version == parsed_hex.version == 4
        assert parsed.variant == parsed_hex.variant == uuid.RFC_4122
