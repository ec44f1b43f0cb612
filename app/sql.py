"""Hot-path SQL helpers: one parameter for a list of ids, and cached statements run on the
driver's cursor.

A lookup runs two small statements (the token; the page, with each user's groups and grants
as ``json_rows`` columns), a create about ten. Through ``Connection.execute`` each costs
three to four times what SQLite itself spends on it (cache-key lookup, parameter
construction, the result object); ``fetch`` compiles a fixed statement once per dialect
and keeps only the type processing.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections import namedtuple
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from sqlalchemy import JSON, Boolean, Connection, Executable, String, Table, bindparam, insert
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Insert, UpdateBase, ValuesBase
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

from app.folding import fold_text

__all__ = ["IdList", "among", "among_selected", "fetch", "fetch_many", "fold", "fold_text",
           "json_rows"]


class IdList(TypeDecorator[list[str]]):
    """A list of ids bound as ONE parameter: a text[] array on PostgreSQL, JSON text on SQLite."""

    impl = String
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        """ARRAY(String) on PostgreSQL; plain text (a JSON array) elsewhere."""
        return dialect.type_descriptor(ARRAY(String) if dialect.name == "postgresql"
                                       else String())

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        """The ids as the driver wants them."""
        if value is None:
            return None
        return list(value) if dialect.name == "postgresql" else json.dumps(list(value))


class among(FunctionElement[bool]):
    """``column`` is one of the ids bound to ``name``, whatever their number.

    PostgreSQL: ``column = ANY(:ids)`` with one array parameter, sent in binary (psycopg's
    ``%b``: no id is quoted, so 50,000 of them cost the client a third as much); SQLite:
    ``column IN (SELECT value FROM json_each(:ids))`` with one JSON text parameter (JSON1,
    built into SQLite since 3.38). An expanding IN renders a new statement text per list
    length, which SQLAlchemy re-renders on every execution (~a tenth of a one-user lookup)
    and SQLite re-prepares; here the text is fixed, so both statement caches hit, and no
    list is ever split to stay under SQLite's variable limit.
    """

    type = Boolean()
    inherit_cache = True
    name = "among"
    # A predicate by itself: without this SQLite (no native booleans) would get "... = 1".
    _is_implicitly_boolean = True

    def __init__(self, column: ColumnElement[Any], name: str = "ids") -> None:
        super().__init__(column, BindParameter(name, type_=IdList()))


@compiles(among)
def _among_default(element: among, compiler: SQLCompiler, **kw: Any) -> str:
    column, ids = list(element.clauses)
    return f"{compiler.process(column, **kw)} = ANY ({compiler.process(ids, **kw)})"


@compiles(among, "postgresql")
def _among_postgresql(element: among, compiler: SQLCompiler, **kw: Any) -> str:
    column, ids = list(element.clauses)
    placeholder = compiler.process(ids, **kw)
    if compiler.dialect.driver == "psycopg" and placeholder.startswith(f"%({ids.key})s"):
        # psycopg's %b: the array goes in binary, each id as its bytes. In text it is
        # quoted element by element (a regular expression each): 0.1 s of client CPU for
        # the 50,000 members of a group a rename or delete locks and moves, per statement
        # (bench/big_group_bench.py), against 0.03 s.
        placeholder = f"%({ids.key})b" + placeholder[len(f"%({ids.key})s"):]
    return f"{compiler.process(column, **kw)} = ANY ({placeholder})"


@compiles(among, "sqlite")
def _among_sqlite(element: among, compiler: SQLCompiler, **kw: Any) -> str:
    column, ids = list(element.clauses)
    # Compiled fragments only (a column and a bound parameter): no value is ever in the text.
    return (f"{compiler.process(column, **kw)} IN "  # noqa: S608
            f"(SELECT value FROM json_each({compiler.process(ids, **kw)}))")


class among_selected(FunctionElement[bool]):
    """``column`` is one of the values ``ids`` (a SELECT of one column) gives, the SELECT
    run once: ``column = ANY (ARRAY(SELECT ...))`` on PostgreSQL, whose InitPlan does not
    depend on the planner's estimates (a join or ``IN`` on a LIMIT subquery, planned
    without statistics of a freshly loaded table, ran a nested loop over every row: seconds
    for one page); ``column IN (SELECT ...)`` elsewhere."""

    type = Boolean()
    inherit_cache = True
    name = "among_selected"
    _is_implicitly_boolean = True

    def __init__(self, column: ColumnElement[Any], ids: Any) -> None:
        super().__init__(column, ids.correlate(None).scalar_subquery())


@compiles(among_selected)
def _among_selected_default(element: among_selected, compiler: SQLCompiler,
                            **kw: Any) -> str:
    column, ids = list(element.clauses)
    return f"{compiler.process(column, **kw)} IN {compiler.process(ids, **kw)}"


@compiles(among_selected, "postgresql")
def _among_selected_postgresql(element: among_selected, compiler: SQLCompiler,
                               **kw: Any) -> str:
    column, ids = list(element.clauses)
    return f"{compiler.process(column, **kw)} = ANY (ARRAY{compiler.process(ids, **kw)})"


class fold(FunctionElement[str]):
    """Text folded for a case-insensitive comparison (RFC 7643 §2.2, caseExact=false).

    Canonically equivalent spellings are one (NFC first: ``José`` with a combining accent is
    ``José``). PostgreSQL: ``lower(normalize(x, NFC))``, ``lower()`` folding every letter in a
    UTF-8 locale (README). SQLite: ``roster_fold()``, :func:`fold_text` registered on every
    connection (``app.engine.register_fold``), because SQLite's own ``lower()`` folds A-Z only:
    there ``ÖZIL@x.de`` and ``özil@x.de`` were two users and ``userName eq`` in the other case
    missed. A function of Roster's own rather than an override of ``lower()``: an index built
    with one ``lower()`` and read with another would be corrupt for every non-ASCII name, while
    an index on ``roster_fold()`` (migration 0032) cannot be written by a connection that lacks
    it (the ``sqlite3`` shell: "unknown function"). The unique indexes on it are built with this
    exact expression (migration 0032): another spelling of the fold in a query would not use
    them.
    """

    type = String()
    inherit_cache = True
    name = "fold"

    def __init__(self, text: ColumnElement[Any]) -> None:
        super().__init__(text)


@compiles(fold)
def _fold_default(element: fold, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower(normalize({compiler.process(element.clauses, **kw)}, NFC))"


@compiles(fold, "sqlite")
def _fold_sqlite(element: fold, compiler: SQLCompiler, **kw: Any) -> str:
    return f"roster_fold({compiler.process(element.clauses, **kw)})"


class json_rows(FunctionElement[Any]):
    """The rows of a (correlated) subquery as one JSON array of arrays, an aggregate:
    ``json_group_array(json_array(...))`` on SQLite, ``json_agg(json_build_array(...))``
    on PostgreSQL (NULL there for no rows, ``[]`` on SQLite: readers take both as empty).
    The order of the arrays is not defined; readers sort them. It lets a page of users
    bring each user's groups and grants along (one statement fewer per SCIM lookup)."""

    type = JSON()
    inherit_cache = True
    name = "json_rows"


@compiles(json_rows)
def _json_rows_default(element: json_rows, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_agg(json_build_array({compiler.process(element.clauses, **kw)}))"


@compiles(json_rows, "sqlite")
def _json_rows_sqlite(element: json_rows, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_group_array(json_array({compiler.process(element.clauses, **kw)}))"


class _Compiled(NamedTuple):
    sql: str
    # Parameter names in placeholder order (qmark: SQLite), or None for named (psycopg).
    order: tuple[str, ...] | None
    defaults: dict[str, Any]
    binds: dict[str, Callable[[Any], Any]]
    results: tuple[Callable[[Any], Any] | None, ...]
    row: type[tuple[Any, ...]]
    # Whether it gives rows, known from the statement: asking the cursor costs, as
    # psycopg's ``cursor.description`` builds a Column object per column (~30 µs for a user
    # row, more than the rest of the statement's client-side work).
    gives_rows: bool


@functools.lru_cache(maxsize=1024)
def _compile(statement: Executable, dialect: Dialect,
             keys: tuple[str, ...] | None) -> _Compiled | None:
    """The statement's SQL text, parameters and result processing for ``dialect``; None
    when only ``Connection.execute`` can run it: expanding or literal-rendered parameters,
    an INSERT/UPDATE whose column defaults SQLAlchemy computes per execution (the cursor
    path would write NULL instead), or textual SQL. ``keys``: the parameter names an INSERT or
    UPDATE is run with, which decide its columns, as in ``Connection.execute``."""
    if isinstance(statement, Insert) and not statement._returning:
        # No implicit RETURNING of the new primary key (PostgreSQL): nobody reads it here.
        statement = statement.inline()
    compiled: Any = statement.compile(dialect=dialect,
                                      column_keys=list(keys) if keys is not None else None)
    columns = compiled._result_columns
    if (compiled.literal_execute_params or compiled.post_compile_params
            or compiled.insert_prefetch or compiled.update_prefetch
            or (not columns and not isinstance(statement, UpdateBase))):
        # The last: textual SQL, whose result columns (if any) only the cursor knows.
        return None
    results = tuple(entry[3]._cached_result_processor(dialect, None) for entry in columns)
    row = namedtuple("Row", [entry[0] for entry in columns], rename=True)  # type: ignore[misc]
    order = tuple(compiled.positiontup) if compiled.positional else None
    return _Compiled(compiled.string, order, dict(compiled.params),
                     dict(compiled._bind_processors), results, row, bool(columns))


def fetch(connection: Connection, statement: Executable,
          params: Mapping[str, Any]) -> list[Any]:
    """All rows of a statement built once (a module constant or a cached one), as named
    tuples: ``connection.execute(statement, params).all()`` at about a third of the cost.
    An INSERT, UPDATE or DELETE without RETURNING gives no rows.

    The statement must stay the same object (the compiled form is cached by identity). It
    runs on the driver's cursor inside the connection's transaction, with SQLAlchemy's
    bind and result processing; driver errors come out as SQLAlchemy's ``DBAPIError``.
    When statements are logged (``database.echo``) or anything listens for cursor events
    (tests that watch statements) it simply goes through ``connection.execute``, so they
    see it.
    """
    keys = tuple(params) if isinstance(statement, ValuesBase) else None
    compiled = _unwatched(connection, statement, keys)
    if compiled is None:
        result = connection.execute(statement, params)
        return list(result) if result.returns_rows else []
    raw = _run(connection, compiled, _bound(compiled, params), many=False)
    results, row = compiled.results, compiled.row
    if not any(results):
        return [row(*r) for r in raw]
    return [row(*[v if p is None else p(v) for p, v in zip(results, r, strict=True)])
            for r in raw]


def fetch_many(connection: Connection, statement: Insert, rows: list[dict[str, Any]]) -> None:
    """``connection.execute(statement, rows)`` for an INSERT built once whose rows all name
    the same columns, on the driver's ``executemany`` (as ``fetch`` runs one statement):
    SQLAlchemy's own path costs more per row than SQLite's insert of it (the flight
    recorder's batches, bench/README.md). Watched connections and statements ``fetch``
    cannot compile take ``Connection.execute``."""
    if not rows:
        return
    compiled = _unwatched(connection, statement, tuple(rows[0]))
    if compiled is None:
        connection.execute(statement, rows)
        return
    bound = [_bound(compiled, params) for params in rows]
    if compiled.order is None or connection.dialect.name != "sqlite":
        _run(connection, compiled, bound, many=True)
        return
    # SQLite: rows in multi-row VALUES statements of 2^k rows, each one step of SQLite
    # (below). ``executemany`` steps once per row and hands the GIL over at each step; the
    # flight recorder's writer thread, taking it back from a busy request thread every row,
    # held SQLite's write lock for 5-30 ms per batch of 200 instead of 2-3 ms.
    done = 0
    while done < len(bound):
        size = min(_max_rows(len(compiled.order)), 1 << ((len(bound) - done).bit_length() - 1))
        several = _compiled_rows(statement, connection.dialect, compiled.order, size)
        chunk = bound[done:done + size]
        if several is None:
            _run(connection, compiled, chunk, many=True)
        else:
            _run(connection, several, [value for row in chunk for value in row], many=False)
        done += size


# Rows per multi-row INSERT: at most 2^7 (a batch of 200 takes three: 128, 64, 8), and
# within SQLite's parameters per statement: 32,766 since 3.32, 999 before
# (https://sqlite.org/limits.html#max_variable_number); the recorder's rows have 12 each.
_MAX_ROWS = 128
_MAX_PARAMETERS = 32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999


def _max_rows(columns: int) -> int:
    """The most rows (a power of two) one INSERT of ``columns`` columns may carry."""
    fitting = max(1, _MAX_PARAMETERS // max(1, columns))
    return min(_MAX_ROWS, 1 << (fitting.bit_length() - 1))


@functools.lru_cache(maxsize=64)
def _compiled_rows(statement: Insert, dialect: Dialect, order: tuple[str, ...],
                   size: int) -> _Compiled | None:
    """The INSERT for ``size`` rows at once (``VALUES (...), (...)``), its parameters row
    after row in ``order``; None when ``statement`` is not an INSERT of its table's columns
    by those names, or the statement would not take them so."""
    table = statement.table
    if size < 2 or not isinstance(table, Table) or any(n not in table.c for n in order):
        return None
    names = [[f"r{i}_{j}" for j in range(len(order))] for i in range(size)]
    several = insert(table).values([
        {table.c[name]: bindparam(key) for name, key in zip(order, row, strict=True)}
        for row in names])
    compiled: Any = several.compile(dialect=dialect)
    if tuple(compiled.positiontup or ()) != tuple(key for row in names for key in row):
        return None
    return _Compiled(compiled.string, None, {}, {}, (), tuple, False)


def _unwatched(connection: Connection, statement: Executable,
               keys: tuple[str, ...] | None) -> _Compiled | None:
    """The compiled form to run on the cursor; None when statements are logged or watched
    (``fetch``), or when only ``Connection.execute`` can run it (``_compile``)."""
    dispatch = connection.dispatch
    if (connection._echo or dispatch.before_cursor_execute  # type: ignore[attr-defined]
            or dispatch.after_cursor_execute):
        return None
    return _compile(statement, connection.dialect, keys)


def _bound(compiled: _Compiled, params: Mapping[str, Any]) -> Any:
    """One row's parameters as the driver takes them, bind-processed."""
    values = {**compiled.defaults, **params}
    for name, process in compiled.binds.items():
        values[name] = process(values[name])
    return values if compiled.order is None else [values[n] for n in compiled.order]


def _run(connection: Connection, compiled: _Compiled, bound: Any, *,
         many: bool) -> list[Any]:
    """Execute on a cursor of the connection's driver connection (``executemany`` for
    ``many``); the raw rows, if any. Driver errors come out as SQLAlchemy's ``DBAPIError``."""
    dbapi = connection.connection.dbapi_connection
    assert dbapi is not None
    cursor = dbapi.cursor()
    try:
        if many:
            cursor.executemany(compiled.sql, bound)
            return []
        cursor.execute(compiled.sql, bound)
        return cursor.fetchall() if compiled.gives_rows else []
    except connection.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(compiled.sql, bound, exc,
                                  connection.dialect.loaded_dbapi.Error,
                                  dialect=connection.dialect) from exc
    finally:
        cursor.close()
