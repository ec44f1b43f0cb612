"""The directory gunicorn's workers keep their Prometheus samples in (``config/gunicorn.conf.py``).

An operator may name it (``PROMETHEUS_MULTIPROC_DIR``): it must be a writable directory, and
it is theirs, never removed. Otherwise the master makes a temporary one per start
(``roster-metrics-*``, named in ``ROSTER_METRICS_TMPDIR`` too) and removes it when it exits:
each start left one behind, with a sample file per worker that ever ran, until a /tmp
cleaner came by, and that cleaner could take the directory of a server still running (the
master makes it again on SIGHUP).

Not while another master may use it. On SIGUSR2 gunicorn re-executes itself: the new master
gets the environment gunicorn started with, which holds the directory once a SIGHUP has run
this file again (gunicorn reads its environment anew on a reload), and makes one of its own
otherwise. The old master, told to stop once the new one serves, keeps a directory the new
master was given; the new one, stopped while the old still runs (a rollback), keeps one it
was given by the old one. The last master to use it removes it.
"""

from __future__ import annotations

import atexit
import os
import shutil
from typing import Any

# config/gunicorn.conf.py makes the directory (before prometheus_client is imported: it reads
# the variable at import) and hands it here.
TMPDIR = "ROSTER_METRICS_TMPDIR"
MULTIPROC = "PROMETHEUS_MULTIPROC_DIR"

# This process's part: the master whose exit removes the directory (a worker is forked from
# it and runs its atexit handlers at sys.exit: not theirs), whether it made the directory or
# was given it by the master that re-executed into it, and its arbiter (on_starting).
_state: dict[str, Any] = {"pid": None, "made_here": False, "arbiter": None}


def own(*, made_here: bool) -> None:
    """The temporary directory is this master's to remove at exit (``made_here``: it made
    it, else a master that re-executed into this one gave it); once per process, the config
    file runs again on every SIGHUP."""
    if _state["pid"] == os.getpid():
        return
    _state.update(pid=os.getpid(), made_here=made_here)
    atexit.register(_remove)


def on_starting(arbiter: Any) -> None:
    """gunicorn's ``on_starting`` hook: the master's arbiter, asked at exit whether another
    master uses the directory."""
    _state["arbiter"] = arbiter


def _remove() -> None:
    if _state["pid"] != os.getpid():
        return  # a worker leaving (sys.exit in a forked child)
    made = os.environ.get(TMPDIR)
    if not made or made != os.environ.get(MULTIPROC):
        return
    arbiter = _state["arbiter"]
    if arbiter is not None:
        if arbiter.reexec_pid and arbiter.cfg.env_orig.get(MULTIPROC) == made:
            return  # the master SIGUSR2 started was given it and serves on
        if (not _state["made_here"] and arbiter.master_pid
                and arbiter.master_pid == os.getppid()):
            return  # a rollback: the master that gave it to this one serves on
    shutil.rmtree(made, ignore_errors=True)
