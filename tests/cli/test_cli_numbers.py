"""Numbers on the command line past what a date or a database integer holds: a usage error
naming the option (an OverflowError traceback before)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register

register()

HUGE = "99999999999999999999"


@pytest.mark.parametrize(("args", "said"), [
    (["audit", "export", "--after-id", HUGE],
     f"Invalid value for '--after-id': {HUGE} is not in the range 0<=x<=9223372036854775807"),
    (["events", "redeliver", HUGE],
     f"Invalid value for 'DELIVERY_ID': {HUGE} is not in the range 0<=x<=9223372036854775807"),
    (["audit", "export", "--since", "9999999d"],
     "Invalid value for --since: '9999999d' is further back than dates go"),
    (["audit", "deprovisions", "--org", "acme", "--until", "99999999999d"],
     "Invalid value for --until: '99999999999d' is further back than dates go"),
    (["events", "purge", "--retention-days", "99999999999"],
     "Invalid value for '--retention-days': 99999999999 is not in the range 1<=x<=36500"),
    (["lifecycle", "purge", "--retention-days", "99999999999"],
     "Invalid value for '--retention-days': 99999999999 is not in the range x<=36500"),
    (["lifecycle", "purge", "--deprovisioned-retention-days", "-1"],
     "Invalid value: retention must not be negative"),
], ids=lambda value: " ".join(value[:2]) if isinstance(value, list) else None)
def test_a_number_too_large_is_a_usage_error(fresh_url, args, said):
    """Exit 2 with click's usage error; nothing reached the database."""
    runner = CliRunner()
    env = {"ROSTER_DATABASE__URL": fresh_url}
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    assert runner.invoke(cli, ["org", "create", "acme"], env=env).exit_code == 0
    result = runner.invoke(cli, args, env=env)
    assert result.exit_code == 2, result.output
    assert said in result.output
