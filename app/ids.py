"""Random identifiers: UUID version 4 (RFC 9562 §5.4) from buffered OS randomness.

``uuid.uuid4()`` reads its 16 bytes with one ``getrandom`` system call. Inside a request
that call cost ~4 µs on the 2-core VM (a system call's entry and exit, with cold caches,
not the randomness), and a SCIM create issues four identifiers (the user, its outbox
event, its audit event, the request id). Here the same source, ``os.urandom``, is read
4 KiB at a time: one system call per 256 identifiers, and the bytes are the same
cryptographically strong output, so identifiers stay unpredictable.

- The buffer belongs to one process: a forked child (a gunicorn worker) starts with an
  empty one, so parent and child never hand out the same bytes.
- Threads take their 16 bytes under a lock.
- For identifiers only. Secrets (tokens, keys) come from ``secrets`` directly, so no
  secret ever sits in this buffer.
"""

from __future__ import annotations

import os
import threading
import uuid

_DRAW = 4096
_lock = threading.Lock()
_buffer = b""
_offset = 0


def _reset() -> None:
    global _buffer, _offset, _lock
    _buffer, _offset, _lock = b"", 0, threading.Lock()


os.register_at_fork(after_in_child=_reset)


def _draw() -> bytearray:
    """16 bytes of the buffered randomness, as a version 4 UUID's bytes (RFC 9562 §5.4: the
    version nibble 0100 in octet 6, the variant bits 10 in octet 8)."""
    global _buffer, _offset
    with _lock:
        if _offset + 16 > len(_buffer):
            _buffer, _offset = os.urandom(_DRAW), 0
        chunk = bytearray(_buffer[_offset:_offset + 16])
        _offset += 16
    chunk[6] = chunk[6] & 0x0F | 0x40
    chunk[8] = chunk[8] & 0x3F | 0x80
    return chunk


def random_uuid() -> uuid.UUID:
    """A version 4 UUID from the buffered randomness."""
    return uuid.UUID(bytes=bytes(_draw()))


def new_id() -> str:
    """A server-issued identifier as UUID text (SCIM ``id``, primary keys, event ids): what
    ``str(uuid.UUID(...))`` gives, without building the object (1.4 against 3.2 us)."""
    digits = _draw().hex()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def request_id() -> str:
    """A request id: 32 hex digits, as ``uuid4().hex`` gave."""
    return _draw().hex()


def shown_id(value: str, limit: int = 80) -> str:
    """An identifier from a request as an error may quote it: quoted (an empty or blank one
    shows as such, not as nothing) and cut to ``limit`` characters."""
    return repr(value) if len(value) <= limit else repr(value[:limit]) + "..."
