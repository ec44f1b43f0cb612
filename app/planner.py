"""SQLite query-planner statistics (https://sqlite.org/lang_analyze.html).

Without statistics SQLite plans a filtered SCIM list (``externalId eq "..."``, ordered by
creation) on the index that yields the ORDER BY, and so walks every user of the
directory instead of the one or two the (directory_id, external_id) index would find.
PostgreSQL keeps its own statistics (autovacuum); SQLite needs ANALYZE, which only says
something once the tables hold data. So a new database gets nominal statistics for the
SCIM tables (SQLite documents writing sqlite_stat1 by hand, "Fixed Results Of ANALYZE"),
and ``roster worker`` replaces them with measured ones from time to time.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, text

# The tables whose lists offer the planner a choice between indexes.
SCIM_TABLES = ("users", "groups")
# Columns that name a tenant: one value covers (nominally) every row.
TENANT_COLUMNS = frozenset({"directory_id", "organization_id"})
NOMINAL_ROWS = 10_000
# How many rows ANALYZE samples per index (bounded cost on large tables).
ANALYSIS_LIMIT = 2_000
# Below this many users a sample says little about the tables to come (an IdP's first
# import adds thousands within minutes), so the nominal statistics stay.
MIN_MEASURED_ROWS = 1_000
# Indexes that IdP lookups search by equality (externalId, userName, displayName): at most
# this many rows per value, whatever a sample measured. A sample taken while a directory's
# users had no externalId yet (all NULL) would otherwise rate the index useless, and the
# first big Okta import would then scan the whole directory per lookup until the next run.
LOOKUP_INDEXES = {
    "ix_users_directory_external_id": 10, "ix_groups_directory_external_id": 10,
    "uq_users_directory_username": 1, "uq_groups_directory_display_name": 1,
}


def _nominal(columns: list[str | None], unique: bool, table_rows: int = NOMINAL_ROWS) -> str:
    """``N a1 a2 ...``: rows, then the average rows per distinct prefix of the index."""
    estimates, rows = [], table_rows
    for position, column in enumerate(columns):
        last = position == len(columns) - 1
        if column in TENANT_COLUMNS and position == 0:
            rows = table_rows
        else:
            rows = 1 if unique and last else max(1, rows // 1000)
        estimates.append(str(rows))
    return " ".join([str(table_rows), *estimates])


def seed_statistics(connection: Connection) -> int:
    """Write nominal sqlite_stat1 rows for SCIM table indexes that have none; returns how
    many.

    A new database gets rows for every index. An existing one keeps its rows, nominal or
    measured, and an index a migration added gets a nominal row sized to the table's
    current figure: without one SQLite would guess that an equality on its tenant column
    finds ten rows, and might walk a whole directory for an ``externalId eq`` lookup.
    """
    if connection.dialect.name != "sqlite":
        return 0
    connection.exec_driver_sql("ANALYZE sqlite_schema")  # creates sqlite_stat1 if missing
    written = _fill_missing(connection)
    if written:
        _reload_everywhere(connection)
    return written


def _fill_missing(connection: Connection) -> int:
    """A nominal row, sized to the table's figure, for each SCIM table index without one."""
    written = 0
    for table in SCIM_TABLES:
        known = {index: stat for index, stat in connection.execute(
            text("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = :t"), {"t": table})}
        table_rows = next((int(stat.split()[0]) for stat in known.values()
                           if stat and stat.split()[0].isdigit()), NOMINAL_ROWS)
        for _seq, index, unique, _origin, _partial in connection.exec_driver_sql(
                f"PRAGMA index_list('{table}')"):
            if index in known:
                continue
            columns = [row[2] for row in connection.exec_driver_sql(
                f"PRAGMA index_info('{index}')")]
            connection.execute(text("INSERT INTO sqlite_stat1 (tbl, idx, stat) "
                                    "VALUES (:t, :i, :s)"),
                               {"t": table, "i": index,
                                "s": _nominal(columns, bool(unique), table_rows)})
            written += 1
    return written


def refresh_statistics(engine: Engine, *, min_rows: int = MIN_MEASURED_ROWS) -> bool:
    """Replace the statistics with measured ones (bounded sampling) once ``users`` holds
    ``min_rows``; SQLite only. Returns whether it did."""
    if engine.dialect.name != "sqlite":
        return False
    with engine.begin() as connection:
        users = connection.exec_driver_sql("SELECT count(*) FROM users").scalar() or 0
        if users < max(1, min_rows):
            return False  # too few (or no) rows: the nominal statistics say more
        connection.exec_driver_sql(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT}")
        connection.exec_driver_sql("ANALYZE")
        _cap_lookup_indexes(connection)
        # ANALYZE writes no row for an empty index (the partial index of pending manager
        # references, in a directory where every manager is known); SQLite then plans the
        # whole table as if half measured (a deep page sorted its users again).
        _fill_missing(connection)
        _reload_everywhere(connection)
    return True


def _cap_lookup_indexes(connection: Connection) -> None:
    """Keep the measured row counts but never rate a lookup index worse than nominal."""
    for index, most in LOOKUP_INDEXES.items():
        row = connection.execute(text("SELECT stat FROM sqlite_stat1 WHERE idx = :i"),
                                 {"i": index}).first()
        if row is None:
            continue
        figures = row[0].split(" ")
        if len(figures) < 3 or not figures[-1].isdigit() or int(figures[-1]) <= most:
            continue
        figures[-1] = str(most)
        connection.execute(text("UPDATE sqlite_stat1 SET stat = :s WHERE idx = :i"),
                           {"s": " ".join(figures), "i": index})


def _reload_everywhere(connection: Connection) -> None:
    """Make every connection to the database plan with the statistics just written.

    SQLite loads sqlite_stat1 together with the schema. ``ANALYZE sqlite_schema`` reloads
    it on the current connection only (https://sqlite.org/lang_analyze.html), and neither
    ANALYZE nor a write to sqlite_stat1 changes the schema cookie, so every other open
    connection (each web worker keeps its own for hours) would go on planning with the
    figures it loaded when it opened. A table created and dropped in the same transaction
    changes the cookie and nothing else: at its next statement every connection sees the
    change and reads the schema, and the statistics with it, again.
    """
    connection.exec_driver_sql("CREATE TABLE IF NOT EXISTS roster_statistics_reload (x)")
    connection.exec_driver_sql("DROP TABLE roster_statistics_reload")
    connection.exec_driver_sql("ANALYZE sqlite_schema")  # this connection, too
