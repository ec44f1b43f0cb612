"""The counts and durations `roster serve` hands gunicorn (and its workers) have an upper
bound checked at start: ``ROSTER_SERVER__WORKERS=99999999999999999999`` passed validation
and reached gunicorn's command line (which forks until the host gives out), a huge
``server.timeout`` overflowed gunicorn's sleeps, and a huge ``server.switch_interval_us``
set CPython's switch interval to 0.0 without a word."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register
from app.settings import SettingsError, load_settings
from app.settings_checks import SERVER_BOUNDS

register()


@pytest.mark.parametrize(("key", "bound"), sorted(SERVER_BOUNDS.items()))
def test_each_server_count_has_an_upper_bound(key, bound):
    """One line naming the setting and its bound; the bound itself is taken."""
    variable = f"ROSTER_SERVER__{key.upper()}"
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={variable: "99999999999999999999"})
    assert raised.value.problems == [f"server.{key} must be at most {bound}"]
    assert load_settings(environ={variable: str(bound)})["server"][key] == bound


def test_the_bounds_are_sane():
    """Workers: far more than any host's cores; a request or a GIL slice: within a day, a
    second."""
    assert SERVER_BOUNDS == {"workers": 1024, "timeout": 86400, "read_timeout": 86400,
                             "switch_interval_us": 1_000_000}


def test_roster_serve_refuses_too_many_workers_on_its_command_line():
    """`roster serve --workers N` is bounded as server.workers is (a usage error, exit 2),
    before gunicorn is started."""
    result = CliRunner().invoke(cli, ["serve", "--workers", "99999999999999999999"])
    assert result.exit_code == 2, result.output
    assert "1<=x<=1024" in result.output
