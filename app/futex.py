"""Cross-process wake-ups on a counter in a shared file mapping: Linux futexes.

The SQLite writers' queue (app/sqlite_writers.py) waits for a file lock held by another
process. ``flock`` cannot wait with a timeout, and polling it (50 µs to 0.5 ms apart) left
the lock free until the next poll and cost a system call and a wake-up per try. With the
wait below a SCIM create waited 107-260 µs for the lock instead of 330-390 (two gunicorn
workers, concurrency 8; bench/README.md, session 9).

The holder bumps a 32-bit counter in the lock file's first page when it lets go and wakes
every waiter (``FUTEX_WAKE``); a waiter that found the lock taken sleeps in the kernel
until the counter moves, a wake, or its timeout (``FUTEX_WAIT``, futex(2)). A waiter reads
the counter before it tries the lock, so a release between the two makes the wait return
at once: no wake-up is lost. A holder that dies releases its ``flock`` but wakes nobody;
the waiters' bounded waits cover that.

Only where the system call's number is known: Linux on x86-64 and arm64. Elsewhere
``SharedCounter.open`` gives None and the queue polls as before.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import sys

_SYS_FUTEX = ({"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98}
              .get(platform.machine().lower()) if sys.platform == "linux" else None)
# Process-shared futexes (no FUTEX_PRIVATE_FLAG): the word lives in a file mapping.
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1
_EVERYONE = 2**31 - 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


# ctypes.CDLL releases the GIL around each call, so a waiting thread blocks no other.
_LIBC = ctypes.CDLL(None) if _SYS_FUTEX is not None else None


class SharedCounter:
    """A 32-bit counter at the start of a file, mapped shared by every process using it."""

    def __init__(self, fd: int) -> None:
        # Grow the file to one page before mapping it (never shrunk: every process maps it).
        if os.fstat(fd).st_size < mmap.PAGESIZE:
            os.ftruncate(fd, mmap.PAGESIZE)
        self._map = mmap.mmap(fd, mmap.PAGESIZE)
        self._word: ctypes.c_uint32 | None = ctypes.c_uint32.from_buffer(self._map)
        self._address = ctypes.c_void_p(ctypes.addressof(self._word))

    @classmethod
    def open(cls, fd: int) -> SharedCounter | None:
        """The counter of the file open on ``fd``; None where futexes are not available."""
        if _LIBC is None:
            return None
        try:
            return cls(fd)
        except (OSError, ValueError):
            return None  # a file system that cannot map it: the caller polls

    @property
    def value(self) -> int:
        """The counter now."""
        assert self._word is not None
        return self._word.value

    def wait(self, seen: int, timeout: float) -> None:
        """Sleep while the counter is ``seen``, until a ``wake`` or ``timeout`` seconds.

        Returns at once when the counter has moved already; may also return early (a
        signal, a spurious wake-up), so the caller looks again.
        """
        assert _LIBC is not None
        whole = int(timeout)
        limit = _Timespec(whole, int((timeout - whole) * 1e9))
        _LIBC.syscall(_SYS_FUTEX, self._address, _FUTEX_WAIT, ctypes.c_uint32(seen),
                      ctypes.byref(limit), None, 0)

    def bump(self) -> None:
        """Move the counter on (only a lock holder calls this, so no two race)."""
        assert self._word is not None
        self._word.value = (self._word.value + 1) & 0xFFFFFFFF

    def wake(self) -> None:
        """Wake every process and thread waiting on the counter."""
        assert _LIBC is not None
        _LIBC.syscall(_SYS_FUTEX, self._address, _FUTEX_WAKE, _EVERYONE, None, None, 0)

    def close(self) -> None:
        """Unmap (this process's mapping only; the others keep theirs)."""
        self._word = None  # the buffer export must go before the map can close
        self._map.close()
