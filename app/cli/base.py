"""Shared CLI plumbing: lazy settings and database, one transaction, one-line errors."""

from __future__ import annotations

import errno
import functools
import getpass
import sys
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click
from sqlalchemy.exc import (
    DataError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session

from app import migrate
from app.audit import Actor
from app.db import Database
from app.errors import DomainError
from app.observability import configure_logging
from app.settings import Settings, load_settings
from app.visible_names import name_problem

F = TypeVar("F", bound=Callable[..., Any])

# Day counts on the command line, bounded as the settings are (100 years: further back is
# before year 1 for a date, an OverflowError); row ids and positions as a BIGINT holds them
# (a larger one was SQLite's OverflowError at the query).
DAYS = click.IntRange(max=36500)  # a negative count is the command's to refuse
ROW_ID = click.IntRange(0, 2**63 - 1)
# Database errors a command reports as one line (its own errors are DomainErrors).
DATABASE_ERRORS = (OperationalError, ProgrammingError, DataError, IntegrityError)


class CliContext:
    """Settings and database, created on first use so `--help` never touches either."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._db: Database | None = None
        # The database's schema revision is checked as it is opened (``db``): the `db`
        # group turns this off (it is what fixes the schema); `worker` allows a newer
        # release's revision, as /readyz does for the old nodes of a rolling deploy.
        self.check_schema = True
        self.newer_release_ok = False

    @property
    def settings(self) -> Settings:
        """Validated settings (SettingsError exits with one line per problem)."""
        if self._settings is None:
            self._settings = load_settings()
            configure_logging("WARNING", self._settings["logging"]["format"])
        return self._settings

    @property
    def db(self) -> Database:
        """The configured database, at this code's schema revision: a command against one
        behind it (`roster db upgrade` not run) or ahead (a newer release migrated it) ran,
        and wrote, wherever its queries met no missing table or column. Refused here in
        one line, before any command reads or writes, at the cost of one read of
        alembic_version per invocation (``migrate.stored_revision``)."""
        if self._db is None:
            self._db = Database.from_settings(self.settings["database"])
            if self.check_schema:
                problem = migrate.revision_problem(migrate.stored_revision(self._db.engine),
                                                   newer_ok=self.newer_release_ok)
                if problem is not None:
                    raise click.ClickException(problem)
        return self._db

    @property
    def database_if_open(self) -> Database | None:
        """The database, if this invocation opened it (an error report does not open one)."""
        return self._db

    def close(self) -> None:
        """Release the database's connections (every pooled one, every thread's held one):
        the root context calls this when the command ends, on success or error, so an
        in-process call (tests, a script) leaves no connection to the garbage collector."""
        if self._db is not None:
            db, self._db = self._db, None
            db.dispose()

    @property
    def actor(self) -> Actor:
        """The operator at this terminal."""
        return Actor(type="operator", id=f"cli:{getpass.getuser()}")

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Session]:
        """One transaction; domain and database errors become one clear line.
        ``readonly``: a look before a question (no SQLite write lock held while asking)."""
        try:
            with self.db.transaction(readonly=readonly) as session:
                yield session
        except DomainError as exc:
            raise click.ClickException(exc.detail) from None
        except DATABASE_ERRORS as exc:
            # DataError: a value the database refuses (PostgreSQL: too long, NUL);
            # IntegrityError: a constraint checked at COMMIT (deferred), or one no service
            # turned into a Conflict: a traceback, after the command had said it was done.
            raise click.ClickException(_database_problem(exc, self._db)) from None


def _file_problem(exc: OSError) -> str:
    """A file that could not be read or written, as the operator named it."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def _database_problem(exc: Exception, db: Database | None = None) -> str:
    """One line for a database error: first whether the schema is not this code's (a table
    or column missing because `roster db upgrade` has not run, or a newer release migrated:
    ``migrate.schema_problem`` names both revisions; "no such column" alone said neither),
    then the database's own first line (a table missing at the head is a fault to name,
    not a reason to run `roster db upgrade`)."""
    orig = getattr(exc, "orig", exc)
    lines = str(orig).splitlines()
    first = f"database error: {lines[0] if lines else type(orig).__name__}"
    if db is not None:
        try:
            return migrate.schema_problem(db.engine) or first
        except SQLAlchemyError:
            pass  # the revision cannot be read either: guess from the error
    text = str(orig).lower()
    if "no such table" in text or ("does not exist" in text and "relation" in text):
        return "the database is not migrated: run `roster db upgrade`"
    return first


pass_ctx = click.make_pass_decorator(CliContext, ensure=True)


class RosterGroup(click.Group):
    """The `roster` group: every error it reports shows controls escaped (``printable``),
    for an error quotes what it refused, often a name a tenant or its IdP chose."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; escape the message of a ClickException it raises. A database
        error outside ``CliContext.transaction`` (a command that reads through a service on
        its own connections: `events purge`, `worker`, `db current`) is one line too."""
        try:
            try:
                return super().invoke(ctx)
            except DATABASE_ERRORS as exc:
                cli_ctx = ctx.find_object(CliContext)
                raise click.ClickException(_database_problem(
                    exc, cli_ctx.database_if_open if cli_ctx else None)) from None
            except RecursionError:  # a JSON or TOML file nested past the parser's limit
                raise click.ClickException("a file given is nested too deeply to read") \
                    from None
            except UnicodeDecodeError as exc:  # a text file given (a receipt, a position)
                raise click.ClickException(
                    f"a file given is not UTF-8 text (byte {exc.start} of its content)"
                ) from None
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # `roster ... | head`: click exits quietly
                    raise
                raise click.ClickException(_file_problem(exc)) from None
        except click.ClickException as exc:
            exc.message = printable_lines(exc.message)
            raise


@click.group(cls=RosterGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Roster: SCIM provisioning, role mapping and SSO for a B2B purchasing portal."""
    ctx.call_on_close(ctx.ensure_object(CliContext).close)


# Shown escaped, by Unicode category (UAX #44 §5.7.1): controls (Cc: C0 and C1, ESC that
# starts the terminal's own commands, NEL), format characters (Cf: every bidirectional
# embedding, override, isolate and mark of TR9 §2, CVE-2021-42574, and the byte order mark,
# zero-width spaces and joiners, soft hyphen, tags), the line and paragraph separators (Zl,
# Zp: U+2028 and U+2029 break a table row in two), lone surrogates (Cs) and code points not
# assigned in this Python's Unicode (Cn: a terminal of a later Unicode may treat them as any
# of these). Listed by code point they went stale: U+2028, NEL and the BOM were printed raw.
_UNSEEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Cn"})


def _shown(letter: str) -> str:
    if unicodedata.category(letter) in _UNSEEN_CATEGORIES:
        return letter.encode("unicode_escape").decode()
    return letter


def given_name(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A ``--name`` as given (None: left out, its default applies). Empty or whitespace only
    is a usage error: ``--name "$NAME"`` with the variable unset made a directory named after
    its vendor, an organization after its slug, a role after its key, without a word."""
    if value is None:
        return None
    hint = "" if param.required else f" (leave {param.opts[0]} out for its default)"
    if not value:
        raise click.BadParameter(f"must not be empty{hint}")
    if not value.strip():
        raise click.BadParameter(f"must not be blank (whitespace only){hint}")
    if (problem := name_problem(value)) is not None:
        raise click.BadParameter(f"must {problem}{hint}")
    return value


def printable(value: object) -> str:
    """``value`` as text whose controls are shown escaped (``\x1b``, ``\u2028``), not
    obeyed: names in the lists come from tenants (their admins, their IdPs), and an OSC 52
    sequence in a directory name would write to the operator's clipboard (xterm control
    sequences)."""
    text = str(value)
    if text.isprintable():  # no character of those categories (nor any other space but " ")
        return text
    return "".join(_shown(letter) for letter in text)


def printable_lines(text: object) -> str:
    """``printable`` line by line: the line breaks of a message of several lines are kept."""
    return "\n".join(printable(line) for line in str(text).split("\n"))


def say(message: object = "", *, err: bool = False, nl: bool = True) -> None:
    """``click.echo`` for a message that may quote tenant or IdP text (names, entity ids,
    user names, stored request bodies): controls shown escaped as in the tables."""
    click.echo(printable_lines(message), err=err, nl=nl)


def echo_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Print rows as aligned columns (or a note when empty); controls are shown escaped, and
    a missing value (None) as ``-``, as the tables that format their own cells show it."""
    if not rows:
        click.echo("(none)")
        return
    cells = [{c: printable("-" if r.get(c) is None else r.get(c, "")) for c in columns}
             for r in rows]
    widths = {c: max(len(c), *(shown_width(r[c]) for r in cells)) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in cells:
        click.echo("  ".join(row[c] + " " * (widths[c] - shown_width(row[c]))
                             for c in columns).rstrip())


def shown_width(text: str) -> int:
    """How many terminal columns ``text`` takes (UAX #11): East Asian wide and full-width
    letters two, combining marks and format characters (a zero-width joiner) none. ``len``
    counted code points: a column after ``東京`` or an NFD ``Zürich`` started out of line."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(letter) or unicodedata.category(letter) == "Cf"
               else 2 if unicodedata.east_asian_width(letter) in ("W", "F") else 1
               for letter in text)


def listed_ref(ref: str) -> str:
    """A key or token reference as the lists print its prefix (``rk_ab12cd34...``): the
    trailing ``...`` the listing adds is not part of the stored prefix."""
    return ref.removesuffix("...")


def command_errors(func: F) -> F:
    """Turn domain errors raised outside a transaction into one-line CLI errors."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DomainError as exc:
            raise click.ClickException(exc.detail) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def output_file(path: Path | None, option: str = "'-o' / '--output'") -> Iterator[TextIO]:
    """Where a command writes its output: stdout, or ``path`` replaced only once the command
    has written all of it (under ``<path>.partial`` meanwhile, removed on an error). Opened by
    click, the file was emptied before the command ran, and an unknown --org lost what it
    held (the checkpoints kept outside the database). A path that is no regular file
    (/dev/stdout, a pipe) is written as it is."""
    if path is None:
        yield sys.stdout
        return
    if path.exists() and not path.is_file():
        with path.open("w") as out:
            yield out
        return
    partial = path.with_name(path.name + ".partial")
    try:
        out = partial.open("w")
    except OSError as exc:
        raise click.BadParameter(f"{str(path)!r}: {exc.strerror}", param_hint=option) \
            from None
    try:
        with out:
            yield out
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(path)
