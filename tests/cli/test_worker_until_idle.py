"""`roster worker --until-idle` exits after a round that ran every periodic step, not after
one that skipped the steps an earlier round failed on (it exited 0, the work undone)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from app.db import new_id, utcnow
from app.models.sso import LoginTrace
from tests.conftest import database_locked, rows

ROSTER = str(Path(sys.executable).parent / "roster")
FAILED_ROUND = "worker round failed on a transient database error"


def _impatient(url: str, dialect: str) -> dict[str, str]:
    """The worker's database settings: a lock is given up after 50-100 ms."""
    if dialect == "sqlite":
        return {"ROSTER_DATABASE__URL": url, "ROSTER_DATABASE__SQLITE_BUSY_TIMEOUT_MS": "50"}
    joiner = "&" if "?" in url else "?"
    return {"ROSTER_DATABASE__URL": f"{url}{joiner}options=-c%20lock_timeout%3D100"}


def test_a_step_that_failed_on_a_lock_is_done_before_the_worker_exits(app, db, tenant,
                                                                      database_url, dialect):
    """An expired login trace, its table locked while the worker's first rounds run: they
    fail (logged, retried), and once the lock goes the worker purges the trace, then exits 0.
    Before, each failed step counted as done and the worker exited 0 with the trace kept."""
    with db.transaction() as session:
        session.add(LoginTrace(id=new_id(), organization_id=tenant.org.id, protocol="saml",
                               reason="old", detail="", payload={},
                               created_at=utcnow() - timedelta(days=31)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTER_")}
    env.update(_impatient(database_url, dialect), ROSTER_APP__ENV="test")
    with database_locked(app, db, tables=("sso_login_traces",)):
        worker = subprocess.Popen([ROSTER, "worker", "--until-idle"], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert worker.stdout is not None
        seen: list[str] = []
        failed = 0
        while failed < 3:  # three failed rounds while locked, or the worker ended
            line = worker.stdout.readline()
            if not line:
                break
            seen.append(line)
            failed += FAILED_ROUND in line
    out, _ = worker.communicate(timeout=60)
    output = "".join(seen) + out
    assert worker.returncode == 0, output
    assert "Traceback" not in output
    assert rows(db, "SELECT reason FROM sso_login_traces") == [], output
