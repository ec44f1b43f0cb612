"""Files an operator names on the command line that cannot be read or written, or are not
UTF-8 text: one line and a non-zero exit (tracebacks, or exit 0 with nothing written)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register
from tests.cli.test_cli import _engine_rows

register()

NOT_UTF8 = b"\xff\xfe{}"
ROSTER = str(Path(sys.executable).parent / "roster")


@pytest.fixture
def roster(fresh_url):
    """`roster ARGS` on a migrated fresh database: (exit code, output)."""
    def _run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, list(args), env={"ROSTER_DATABASE__URL": fresh_url,
                                                          "ROSTER_APP__ENV": "test"})
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            result.output
        return result.exit_code, result.output

    assert _run("db", "upgrade")[0] == 0
    return _run


def test_demo_with_a_token_file_it_cannot_write_changes_nothing(roster, fresh_url, tmp_path):
    """A token file in a directory that does not exist: one line, exit 1, and the demo
    organization and its token rolled back (the token was never kept anywhere)."""
    target = tmp_path / "missing" / "demo-token"
    code, out = roster("demo", "--token-file", str(target))
    assert code == 1
    assert out.strip() == (f"Error: cannot write the token file {target}: No such file or "
                           "directory; nothing changed")
    assert _engine_rows(fresh_url, "SELECT count(*) FROM organizations")[0][0] == 0
    assert _engine_rows(fresh_url, "SELECT count(*) FROM directory_tokens")[0][0] == 0


def test_demo_with_a_token_file_that_is_not_text_says_so(roster, tmp_path):
    """A binary file where the token is kept: one line, exit 1."""
    path = tmp_path / "demo-token"
    path.write_bytes(NOT_UTF8)
    code, out = roster("demo", "--token-file", str(path))
    assert code == 1
    assert out.strip() == f"Error: cannot read the token file {path}: not UTF-8 text"


@pytest.mark.parametrize("args", [["audit", "verify-receipt", "{file}"],
                                  ["audit", "verify", "--checkpoints", "{file}"],
                                  ["audit", "export", "--position-file", "{file}"]],
                         ids=lambda args: " ".join(args[:2]))
def test_a_text_file_that_is_not_utf8_is_one_line(roster, tmp_path, args):
    """A receipt, kept checkpoints or an export position in another encoding."""
    path = tmp_path / "given"
    path.write_bytes(NOT_UTF8)
    code, out = roster(*[a.format(file=path) for a in args])
    assert code == 1
    assert out.strip().splitlines()[-1] == \
        "Error: a file given is not UTF-8 text (byte 0 of its content)"


def test_checkpoints_to_a_file_that_cannot_be_made_is_an_error(roster, tmp_path):
    """No checkpoint yet and `-o` into a missing directory: exit 0 and no file before (the
    file was opened at the first line written); now a usage error, and with a directory that
    exists the file is made, empty."""
    code, out = roster("audit", "checkpoints", "-o", str(tmp_path / "missing" / "cp.jsonl"))
    assert code == 2
    assert "No such file or directory" in out
    code, _ = roster("audit", "checkpoints", "-o", str(tmp_path / "cp.jsonl"))
    assert code == 0
    assert (tmp_path / "cp.jsonl").read_text() == ""


@pytest.mark.parametrize("args", [["audit", "checkpoints", "--org", "nope"],
                                  ["audit", "export", "--org", "nope"]],
                         ids=lambda args: " ".join(args[:2]))
def test_an_output_file_is_left_as_it_was_when_the_command_fails(roster, tmp_path, args):
    """`audit checkpoints -o kept.jsonl` with an organization that does not exist: the
    error, exit 1, and the checkpoints kept in that file gone (it was emptied when the
    option was read, before the command ran). The file is replaced only once complete."""
    kept = tmp_path / "kept.jsonl"
    kept.write_text('{"checkpoint": "kept outside the database"}\n')
    code, out = roster(*args, "-o", str(kept))
    assert code == 1
    assert out.strip() == "Error: organization 'nope' does not exist"
    assert kept.read_text() == '{"checkpoint": "kept outside the database"}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["kept.jsonl"]
    code, _ = roster(*args[:2], "-o", str(kept))
    assert code == 0
    assert "kept outside" not in kept.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["kept.jsonl"]


@pytest.mark.parametrize("workers", ["0", "-3"])
def test_serve_refuses_a_worker_count_below_one_before_starting(workers, tmp_path):
    """`serve --workers 0` served with server.workers (2) without a word, and `-3` reached
    gunicorn, which printed its own usage; both are a usage error now, nothing started. (In
    a process of its own: a serve that starts replaces the process with gunicorn.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTER_")}
    env["ROSTER_DATABASE__URL"] = f"sqlite:///{tmp_path / 'roster.db'}"
    result = subprocess.run([ROSTER, "serve", "--bind", "127.0.0.1:0", "--workers", workers],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"Invalid value for '--workers': {workers} is not in the range 1<=x<=1024" \
        in result.stderr


@pytest.mark.parametrize(("bind", "said"), [
    ("127.0.0.1:http", "'http' is not a port number"),
    ("localhost:70000", "'70000' is not a port number"),
    ("127.0.0.1:", "'' is not a port number"),
    ("[::1", "an IPv6 address goes in brackets"),
    ("local host:8000", "'local host' is not a host name"),
    ("unix:", "no socket path"),
    ("fd://x", "not a file descriptor number"),
])
def test_serve_refuses_a_malformed_bind_before_starting(bind, said, tmp_path):
    """`serve --bind` went to gunicorn unchecked: a bad port failed there, in its words, a
    stray space bound a host nobody has. Now a usage error naming the value; nothing starts.
    (In a process of its own: a serve that starts replaces the process with gunicorn.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTER_")}
    env["ROSTER_DATABASE__URL"] = f"sqlite:///{tmp_path / 'roster.db'}"
    result = subprocess.run([ROSTER, "serve", "--bind", bind, "--workers", "1"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"Invalid value for '--bind': {bind!r}: {said}" in result.stderr


@pytest.mark.parametrize("bind", ["127.0.0.1:8000", "[::1]:8000", ":8000", "localhost",
                                  "unix:/run/roster.sock", "fd://3", "tcp://10.0.0.1:80"])
def test_bind_forms_gunicorn_takes_are_accepted(bind):
    """The forms gunicorn's --bind documents pass the check."""
    from app.settings_checks import bind_problem

    assert bind_problem(bind) is None


def test_db_upgrade_where_the_sqlite_directory_cannot_be_made(tmp_path):
    """database.url names a file under a regular file: FileExistsError's traceback before."""
    blocker = tmp_path / "var"
    blocker.write_text("not a directory")
    result = CliRunner().invoke(cli, ["db", "upgrade"], env={
        "ROSTER_DATABASE__URL": f"sqlite:///{blocker / 'roster.db'}"})
    assert result.exit_code == 1
    assert result.output.strip() == (f"Error: cannot make the SQLite database's directory "
                                     f"{blocker}: File exists")


@pytest.mark.parametrize(("name", "text", "args", "said"), [
    ("rules.json", "[" * 100_000 + "]" * 100_000, ["mapping", "apply", "--org", "acme"],
     "is nested too deeply to be a rule file"),
    ("rules.toml", "a = " + "[" * 100_000 + "]" * 100_000, ["mapping", "apply", "--org", "acme"],
     "is nested too deeply to be a rule file"),
    ("receipt.json", '{"a":' * 100_000 + "1" + "}" * 100_000, ["audit", "verify-receipt"],
     "a file given is nested too deeply to read"),
], ids=["json rules", "toml rules", "receipt"])
def test_a_file_nested_past_the_parsers_limit_is_one_line(roster, tmp_path, name, text, args,
                                                          said):
    """100,000 brackets: RecursionError's traceback before."""
    assert roster("org", "create", "acme")[0] == 0
    path = tmp_path / name
    path.write_text(text)
    code, out = roster(*args, str(path))
    assert code == 1
    assert said in out.strip().splitlines()[-1]


def test_a_new_sqlite_database_is_readable_by_its_owner_only(tmp_path):
    """The database file holds personal data, token digests and encrypted secrets: a new
    one (made by `roster db upgrade`, or by the app itself) is 0600, not the umask's 0644,
    and so are its -wal and -shm files. An existing file keeps the mode it has."""
    from app.engine import make_engine

    old = os.umask(0o022)
    try:
        made = tmp_path / "new.db"
        result = CliRunner().invoke(cli, ["db", "upgrade"], env={
            "ROSTER_DATABASE__URL": f"sqlite:///{made}", "ROSTER_APP__ENV": "test"})
        assert result.exit_code == 0, result.output
        by_app = tmp_path / "by-app.db"
        engine = make_engine(f"sqlite:///{by_app}")
        with engine.connect() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x)")
            connection.commit()
            for path in (made, by_app, Path(f"{by_app}-wal"), Path(f"{by_app}-shm")):
                assert path.stat().st_mode & 0o777 == 0o600, path
        engine.dispose()
        chosen = tmp_path / "chosen.db"
        chosen.touch(mode=0o640)
        make_engine(f"sqlite:///{chosen}").dispose()
        assert chosen.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
