"""Roster installed as a package outside its checkout (the Docker image): the `roster` command
finds config/ and migrations/ through ROSTER_HOME or its working directory, and says so in one
line when it finds neither."""

from __future__ import annotations

import compileall
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import app
from app.settings import ROOT
from tests.ops.test_ops import _free_port


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The package copied into a site directory of its own (what `pip install .` puts in
    site-packages), a copy of /srv/roster (config/ and migrations/, no code) and a console
    script like the one pip writes. Compiled once, as pip does."""
    root = tmp_path_factory.mktemp("installed")
    site, home, bin_dir = root / "site", root / "srv", root / "bin"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(Path(app.__file__).parent, site / "app", ignore=ignore)
    for name in ("config", "migrations"):
        shutil.copytree(ROOT / name, home / name, ignore=ignore)
    (home / "var").mkdir()
    compileall.compile_dir(site, quiet=1)
    bin_dir.mkdir()
    script = bin_dir / "roster"
    script.write_text("import sys\n\nimport app\nfrom app.cli import main\n\n"
                      "print('app from', app.__file__, file=sys.stderr)\nsys.exit(main())\n")
    return site, home, script


def _roster(installed: tuple[Path, Path, Path], cwd: Path, *args: str,
            **env: str) -> subprocess.CompletedProcess[str]:
    site, _home, script = installed
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("ROSTER_") and k != "PYTHONPATH"}
    environ.update(PYTHONPATH=str(site), **env)
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_installed_command_migrates_from_its_home_or_from_anywhere_with_roster_home(
        installed, fresh_url, tmp_path):
    """Run from /srv/roster (the image's working directory), or from elsewhere with
    ROSTER_HOME, the installed `roster` reads that config/ and runs its migrations."""
    site, home, _script = installed
    upgraded = _roster(installed, home, "db", "upgrade", ROSTER_DATABASE__URL=fresh_url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"app from {site / 'app'}" in upgraded.stderr  # not the checkout's package
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    current = _roster(installed, elsewhere, "db", "current", ROSTER_DATABASE__URL=fresh_url,
                      ROSTER_HOME=str(home))
    assert current.returncode == 0, current.stderr
    revisions = dict(line.split(":") for line in current.stdout.splitlines())
    assert revisions["current"].strip() == revisions["head"].strip() != "None"


@pytest.mark.parametrize("roster_home", [None, "empty"])
def test_without_its_defaults_the_installed_command_stops_with_one_line(installed, tmp_path,
                                                                         roster_home):
    """Away from its home (no ROSTER_HOME, or one without config/), `roster` stops with a
    configuration error naming ROSTER_HOME, not a KeyError traceback from validation."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"ROSTER_HOME": str(elsewhere)} if roster_home else {}
    proc = _roster(installed, elsewhere, "db", "upgrade", **env)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    [line] = [line for line in proc.stderr.splitlines() if not line.startswith("app from")]
    assert line.startswith("roster: configuration error: config file ")
    assert "defaults.toml does not exist: set ROSTER_HOME" in line


def test_the_images_gunicorn_serves_the_installed_package(installed, fresh_url):
    """The image's command, gunicorn run from /srv/roster with config/gunicorn.conf.py,
    loads the installed package (there is no app/ beside config/) and answers /readyz."""
    site, home, _script = installed
    assert _roster(installed, home, "db", "upgrade", ROSTER_DATABASE__URL=fresh_url).returncode == 0
    port = _free_port()
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("ROSTER_") and k != "PYTHONPATH"}
    environ.update(PYTHONPATH=str(site), ROSTER_HOME=str(home), ROSTER_DATABASE__URL=fresh_url)
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "--config",
                             "config/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
                             "--workers", "1", "app:create_app()"],
                            cwd=home, env=environ, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90  # a loaded machine has taken over 30 s
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "gunicorn did not come up"
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
