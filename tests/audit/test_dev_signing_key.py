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
