"""The development signing key Roster makes itself (``signing.dev_key_file``) is never
readable by anyone but its owner, not even while it is being written."""

from __future__ import annotations

import os
import stat

from app.audit.signing import load_signing_key
from app.settings import ROOT, load_settings


def test_the_dev_key_is_never_written_into_a_file_someone_else_holds_open(tmp_path):
    """The key went first into ``.<name>.<pid>``, opened by name with the umask's mode
    (0644) and made 0600 only after: a file of that name made beforehand (or a reader that
    opened it in between) got the private key through its own handle. Now it is written
    into a new file only its owner may read."""
    key_file = tmp_path / "signing_key.pem"
    planted = tmp_path / f".{key_file.name}.{os.getpid()}"
    planted.write_text("")
    planted.chmod(0o644)
    settings = load_settings(environ={"ROSTER_HOME": str(ROOT),
                                      "ROSTER_SIGNING__DEV_KEY_FILE": str(key_file)})
    with planted.open("rb") as held:
        key = load_signing_key(settings, ROOT)
        assert held.read() == b""
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert load_signing_key(settings, ROOT).key_id == key.key_id  # made once, then read
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([key_file.name, planted.name])


def _checkpoint(key_file: str, tmp_path):
    """`roster audit checkpoint` with ``signing.dev_key_file`` set (and no private_key)."""
    from click.testing import CliRunner

    from app.cli import cli
    from app.cli.commands import register

    register()
    return CliRunner().invoke(cli, ["audit", "checkpoint"], env={
        "ROSTER_SIGNING__DEV_KEY_FILE": key_file,
        "ROSTER_DATABASE__URL": f"sqlite:///{tmp_path / 'unused.db'}"})


def test_a_dev_key_file_that_is_no_key_names_that_setting(tmp_path):
    """It said "signing.private_key is not a PEM private key", a setting left unset."""
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    result = _checkpoint(str(garbage), tmp_path)
    assert result.exit_code == 1, result.output
    assert result.output.strip() == (
        f"Error: signing.dev_key_file ({garbage}) is not a PEM private key")


def test_an_empty_dev_key_file_is_refused_at_start_naming_it(tmp_path):
    """Empty, it named the checkout's directory: "<ROOT>: Is a directory"."""
    import pytest

    from app.settings import SettingsError

    with pytest.raises(SettingsError) as raised:
        load_settings(environ={"ROSTER_SIGNING__DEV_KEY_FILE": ""})
    assert raised.value.problems == [
        "signing.dev_key_file must name a file when signing.private_key is not set"]
    result = _checkpoint("", tmp_path)
    assert result.exit_code == 1
    assert "signing.dev_key_file must name a file" in result.output
    assert "Is a directory" not in result.output


def test_a_dev_key_file_that_is_a_directory_names_that_setting(tmp_path):
    """A directory given: named with its setting, not "Is a directory" alone."""
    result = _checkpoint(str(tmp_path), tmp_path)
    assert result.exit_code == 1, result.output
    assert result.output.strip() == (
        f"Error: signing.dev_key_file ({tmp_path}) cannot be read: Is a directory")
