"""/readyz polled as a balancer polls it: truthful answers, a log that stays readable."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from app import create_app
from app.log_throttle import EveryInterval
from app.migrate import upgrade
from app.ops import views
from tests.conftest import app_overrides


@pytest.mark.parametrize("url", [
    "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1",
    "sqlite:///{tmp}/no-such-directory/roster.db",
])
def test_polling_readyz_while_the_database_is_away_logs_one_line_not_a_traceback_each(
        url, tmp_path, caplog, monkeypatch):
    """Every probe of an unreachable database wrote a warning with its traceback (a probe a
    second: a traceback a second); now each probe is a 503 and the log says it once a
    minute, with the cause and no traceback."""
    monkeypatch.setattr(views, "UNREACHABLE_LOG", EveryInterval(60.0))
    client = create_app(app_overrides(url.format(tmp=tmp_path))).test_client()
    with caplog.at_level(logging.INFO, logger="app.ops.views"):
        for _ in range(5):
            response = client.get("/readyz")
            assert response.status_code == 503
            assert response.get_json() == {"status": "unavailable",
                                           "reason": "database unreachable"}
    lines = [r for r in caplog.records if r.name == "app.ops.views"]
    assert len(lines) == 1
    assert "database unreachable (OperationalError: " in lines[0].getMessage()
    assert not lines[0].exc_info


@pytest.mark.parametrize(("min_free", "status", "body"), [
    # More than any disk holds: this disk counts as full.
    (2**62, 503, {"status": "unavailable", "reason": "database disk full"}),
    (0, 200, {"status": "ok"}),  # 0: the check is off
    (1, 200, {"status": "ok"}),
])
def test_the_free_space_under_which_readyz_calls_the_sqlite_disk_full_is_a_setting(
        min_free, status, body, tmp_path):
    """/readyz called the SQLite database's disk full under a hard-coded 1 MiB: a node whose
    writes need more headroom (large WAL checkpoints) stayed in the balancer until writes
    failed. ``database.sqlite_min_free_bytes`` sets it; 0 turns the check off."""
    url = f"sqlite:///{tmp_path / 'roster.db'}"
    upgrade(url)
    overrides = app_overrides(url)
    overrides["database"]["sqlite_min_free_bytes"] = min_free
    app = create_app(overrides)
    try:
        response = app.test_client().get("/readyz")
    finally:
        app.extensions["roster.db"].dispose()
    assert response.status_code == status
    answer = response.get_json()
    assert {key: answer[key] for key in body} == body
    assert ("free_bytes" in answer) == (status == 503)


def _remove_database(directory: Path) -> None:
    for path in directory.glob("roster.db*"):
        if not path.name.endswith("-writer"):
            path.unlink()


def test_readyz_is_503_once_the_sqlite_file_is_deleted_or_replaced(tmp_path):
    """A node keeps its connections to the SQLite file it opened: deleted (a cleanup script,
    a wrong `rm`), or replaced by another file (a backup moved in, a fresh `roster db
    upgrade`), /readyz still read the revision through them and said 200, while every write
    went into a file no other process sees and that is gone at the restart."""
    url = f"sqlite:///{tmp_path / 'roster.db'}"
    upgrade(url)
    app = create_app(app_overrides(url))
    client = app.test_client()
    try:
        assert client.get("/readyz").status_code == 200
        _remove_database(tmp_path)
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.get_json() == {"status": "unavailable",
                                       "reason": "database file missing"}
        # Another file where the database was: migrated (by a release), but not the one open.
        (tmp_path / "other").mkdir()
        other = f"sqlite:///{tmp_path / 'other' / 'roster.db'}"
        upgrade(other)
        (tmp_path / "other" / "roster.db").replace(tmp_path / "roster.db")
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.get_json() == {"status": "unavailable",
                                       "reason": "database file replaced"}
    finally:
        app.extensions["roster.db"].dispose()
    fresh = create_app(app_overrides(url))  # a restarted node opens the file that is there
    try:
        assert fresh.test_client().get("/readyz").status_code == 200
    finally:
        fresh.extensions["roster.db"].dispose()
