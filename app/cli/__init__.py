"""The `roster` command. Each invocation that changes data is exactly one transaction."""

from __future__ import annotations

from app.cli.base import cli
from app.cli.commands import register


def main() -> None:
    """Console-script entry point."""
    register()
    cli(prog_name="roster")


__all__ = ["cli", "main"]
