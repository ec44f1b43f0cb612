"""A SIGHUP (gunicorn's reload) with settings that do not validate: refused, not an outage.

On SIGHUP gunicorn's master runs ``config/gunicorn.conf.py`` again, which reads Roster's
settings. A config file (``ROSTER_CONFIG``) edited into one that does not validate raised
``SettingsError`` there, a ``SystemExit``: the master exited, its workers saw their parent
gone and stopped, and the server was down over a typo. gunicorn has no hook before its
reload, so :func:`refuse_bad_reloads` wraps ``Arbiter.handle_hup``: the settings are read
first, and when they do not validate the master logs each problem and keeps its workers,
which serve on with the settings they started with.
"""

from __future__ import annotations

import os
from typing import Any

from gunicorn.arbiter import Arbiter

from app.settings import SettingsError, load_settings


def refuse_bad_reloads() -> None:
    """Make the master's SIGHUP check Roster's settings before it reloads (idempotent:
    gunicorn runs its config file again on every reload)."""
    if getattr(Arbiter.handle_hup, "roster_checked", False):
        return
    reload = Arbiter.handle_hup

    def handle_hup(self: Any) -> None:
        try:
            load_settings()
        except SettingsError as exc:
            for problem in exc.problems:
                self.log.error("roster: configuration error: %s", problem)
            self.log.error("reload refused: the workers serve on with the settings they "
                           "started with; fix the configuration and send SIGHUP again")
            return
        reload(self)

    handle_hup.roster_checked = True  # type: ignore[attr-defined]
    Arbiter.handle_hup = handle_hup  # type: ignore[method-assign]


def reexec_as_module(arbiter: Any) -> None:
    """SIGUSR2 (gunicorn's binary upgrade) from ``python -m gunicorn``, as ``roster serve``
    runs it: gunicorn re-executes ``python .../gunicorn/__main__.py``, which puts gunicorn's
    package directory first on ``sys.path``, where its ``http`` package hides the standard
    library's: the new master died importing Flask (``No module named 'http.server'``) and
    the upgrade never happened. It re-executes ``python -m gunicorn`` instead."""
    args = arbiter.START_CTX.get("args", [])
    main = os.path.join("gunicorn", "__main__.py")
    if len(args) > 1 and str(args[1]).endswith(main):
        arbiter.START_CTX["args"] = [args[0], "-m", "gunicorn", *args[2:]]
