"""`--help` of every `roster` command says what each option does, and every command line
README.md shows names a command and options that exist."""

from __future__ import annotations

import re
import shlex

import click
import pytest

from app.cli import cli
from app.cli.commands import register
from app.settings import ROOT

register()


def _commands(command: click.Command = cli, path: tuple[str, ...] = ()
              ) -> list[tuple[tuple[str, ...], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            found += _commands(sub, (*path, name))
    return found


def test_every_command_and_option_has_help():
    """An option without help showed only its name and type in `--help` (`--until TEXT`:
    which format? inclusive?), 23 of them."""
    missing = [f"{' '.join(path)} {param.opts[0]}" if param else " ".join(path)
               for path, command in _commands()
               for param in [None, *command.params]
               if (param is None and not command.help)
               or (isinstance(param, click.Option) and param.name != "help" and not param.help)]
    assert missing == []


def _readme_command_lines() -> list[str]:
    text = (ROOT / "README.md").read_text()
    lines = {m.group(1) for m in re.finditer(r"`(roster [^`]+)`", text)}
    for line in text.splitlines():
        if line.strip().startswith(("roster ", "$ roster ")):
            lines.add(line.split("#")[0].strip().removeprefix("$ ").rstrip("\\ "))
    return sorted(lines)


@pytest.mark.parametrize("line", _readme_command_lines())
def test_the_command_lines_in_the_readme_exist(line):
    """Each `roster ...` of README.md reaches a command, and each option it gives is one of
    that command's (brackets and alternatives read as options)."""
    words = shlex.split(re.sub(r"[\[\]|]", " ", line))[1:]
    command: click.Command = cli
    while words and isinstance(command, click.Group) and words[0] in command.commands:
        command = command.commands[words.pop(0)]
    assert not (isinstance(command, click.Group) and words and words[0].islower()
                and not words[0].startswith("-")), f"no command {words[0]!r}"
    known = {opt for param in command.params
             for opt in (*param.opts, *getattr(param, "secondary_opts", []))}
    unknown = [w.split("=")[0] for w in words
               if w.startswith("-") and w not in ("-", "--") and w.split("=")[0] not in known]
    assert unknown == []
