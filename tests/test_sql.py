"""app/sql.py: one parameter for a list of ids, and cached statements on the driver's cursor."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from app.db import utcnow
from app.directory.tokens import _AUTHENTICATE, hash_token
from app.models import DirectoryToken, OutboxEvent, User
from app.sql import _compile, among, fetch, fetch_many, fold, fold_text

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
# Built once, as fetch requires: the compiled form is cached by statement identity.
_USER_BY_ID = sa.select(User.__table__).where(User.id == sa.bindparam("user_id"))
_USERS_AMONG = sa.select(User.id).where(among(User.id)).order_by(User.user_name)
_NOWHERE = sa.select(sa.column("x")).select_from(sa.table("no_such_table"))
_OUTBOX = OutboxEvent.__table__
_INSERT_OUTBOX = _OUTBOX.insert()
_OUTBOX_BY_TYPE = sa.select(_OUTBOX.c.event_id, _OUTBOX.c.payload, _OUTBOX.c.created_at).where(
    _OUTBOX.c.type == sa.bindparam("type"))


def _create_user(client, tenant, name: str) -> str:
    body = {"schemas": [USER, ENTERPRISE], "userName": name, "active": True,
            "emails": [{"value": name, "type": "work", "primary": True}],
            ENTERPRISE: {"department": "Ops"}}
    response = client.post("/scim/v2/Users", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def test_fetch_gives_the_rows_and_types_of_execute(db, client, tenant):
    """Datetimes (timezone-aware), enums, JSON columns and booleans come out as execute's."""
    user_id = _create_user(client, tenant, "fetch@acme.example")
    digest = hash_token(tenant.token)
    with db.transaction(readonly=True) as session:
        connection = session.connection()
        for statement, params in ((_AUTHENTICATE, {"digest": digest}),
                                  (_USER_BY_ID, {"user_id": user_id})):
            fast = fetch(connection, statement, params)
            slow = connection.execute(statement, params).all()
            assert [tuple(r) for r in fast] == [tuple(r) for r in slow]
            assert [type(v) for v in fast[0]] == [type(v) for v in slow[0]]
        [user] = fetch(connection, _USER_BY_ID, {"user_id": user_id})
    assert user.user_name == "fetch@acme.example"
    assert user.emails == [{"value": "fetch@acme.example", "type": "work", "primary": True}]
    assert user.active is True
    assert user.created_at.tzinfo is not None


def test_fetch_runs_on_the_cursor_unless_cursor_events_are_watched(db, client, tenant):
    """Without cursor listeners execute() is bypassed; with one, the statement is seen."""
    user_id = _create_user(client, tenant, "watch@acme.example")
    executed, cursored = [], []

    def on_execute(conn, clause, *args):
        executed.append(clause)

    def on_cursor(conn, cursor, statement, *args):
        cursored.append(statement)

    sa.event.listen(db.engine, "before_execute", on_execute)
    try:
        with db.transaction(readonly=True) as session:
            assert len(fetch(session.connection(), _USER_BY_ID, {"user_id": user_id})) == 1
        assert _USER_BY_ID not in executed
        sa.event.listen(db.engine, "before_cursor_execute", on_cursor)
        try:
            with db.transaction(readonly=True) as session:
                assert len(fetch(session.connection(), _USER_BY_ID,
                                 {"user_id": user_id})) == 1
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", on_cursor)
    finally:
        sa.event.remove(db.engine, "before_execute", on_execute)
    assert _USER_BY_ID in executed
    assert any("FROM users" in s for s in cursored)


def test_fetch_reports_driver_errors_as_sqlalchemy_errors(db):
    """A failing statement raises DBAPIError (what callers and the retry logic catch)."""
    with pytest.raises(sa.exc.DBAPIError), db.transaction(readonly=True) as session:
        fetch(session.connection(), _NOWHERE, {})


@pytest.mark.parametrize("extra", [0, 1, 1500])
def test_among_matches_exactly_the_bound_ids(db, client, tenant, extra):
    """Any number of ids is one parameter; only the named rows match, none for no ids."""
    ids = [_create_user(client, tenant, f"among{i}@acme.example") for i in range(3)]
    wanted = [ids[2], ids[0], *(str(uuid.uuid4()) for _ in range(extra))]
    with db.transaction(readonly=True) as session:
        connection = session.connection()
        assert [r.id for r in fetch(connection, _USERS_AMONG, {"ids": wanted})] == \
            [ids[0], ids[2]]
        assert connection.execute(_USERS_AMONG, {"ids": wanted}).scalars().all() == \
            [ids[0], ids[2]]
        assert fetch(connection, _USERS_AMONG, {"ids": []}) == []


_NAMES_AMONG = sa.select(User.user_name).where(among(User.user_name, "names")) \
    .order_by(User.user_name)


def test_among_takes_any_text_as_sent(db, client, tenant):
    """Values with what an array literal quotes (comma, quotes, backslash, braces, spaces,
    NULL, non-ASCII) match exactly themselves, on both databases (PostgreSQL: a binary
    array, nothing quoted)."""
    names = ['a,b"c@acme.example', 'back\\slash{x}@acme.example', "Ölaf Ü@acme.example"]
    for name in names:
        _create_user(client, tenant, name)
    with db.transaction(readonly=True) as session:
        found = fetch(session.connection(), _NAMES_AMONG,
                      {"names": [*names, None, "a", "NULL", '"a"']})
    assert sorted(r.user_name for r in found) == sorted(names)


def test_among_renders_one_parameter_per_dialect():
    """json_each over one JSON text on SQLite, = ANY over one array on PostgreSQL, sent in
    binary (psycopg's %b placeholder: no quoting of each id)."""
    statement = sa.select(DirectoryToken.id).where(among(DirectoryToken.directory_id))
    lite = statement.compile(dialect=sqlite.dialect())
    pg = statement.compile(dialect=postgresql.psycopg.dialect())
    assert "directory_tokens.directory_id IN (SELECT value FROM json_each(?))" in lite.string
    assert "directory_tokens.directory_id = ANY (%(ids)b::VARCHAR[])" in pg.string
    assert list(lite.params) == list(pg.params) == ["ids"]


def test_fetch_statements_are_logged_when_echo_is_on(db, client, tenant, caplog):
    """With database.echo, fetch goes through execute, so its statements reach the log."""
    user_id = _create_user(client, tenant, "echo@acme.example")
    db.engine.echo = True
    db.dispose()  # echo is read when a connection opens; a thread's held one predates it
    try:
        with caplog.at_level("INFO", logger="sqlalchemy.engine"), \
                db.transaction(readonly=True) as session:
            assert len(fetch(session.connection(), _USER_BY_ID, {"user_id": user_id})) == 1
    finally:
        db.engine.echo = False
        db.dispose()  # nor may a connection opened with echo on outlive the test
    assert "FROM users" in caplog.text


def _outbox_row(event_id: str, kind: str) -> dict[str, object]:
    return {"event_id": event_id, "organization_id": None, "type": kind, "aggregate_id": None,
            "payload": {"n": 1, "list": ["a"]}, "created_at": utcnow()}


def test_fetch_runs_inserts_with_every_column_given(db):
    """An INSERT naming every column it sets runs on the cursor, gives no rows, stores it."""
    row = _outbox_row(str(uuid.uuid4()), "sql.insert")
    assert _compile(_INSERT_OUTBOX, db.engine.dialect, tuple(row)) is not None
    with db.transaction() as session:
        assert fetch(session.connection(), _INSERT_OUTBOX, row) == []
    with db.transaction(readonly=True) as session:
        [stored] = fetch(session.connection(), _OUTBOX_BY_TYPE, {"type": "sql.insert"})
    assert stored.event_id == row["event_id"]
    assert stored.payload == {"n": 1, "list": ["a"]}
    assert stored.created_at == row["created_at"]


def test_an_insert_leaving_python_defaults_to_sqlalchemy_takes_execute(db):
    """Columns with Python defaults left out (event_id, payload, created_at) are filled
    in by SQLAlchemy, never written as NULL by the cursor path."""
    partial = {"type": "sql.defaults", "organization_id": None, "aggregate_id": None}
    assert _compile(_INSERT_OUTBOX, db.engine.dialect, tuple(partial)) is None
    with db.transaction() as session:
        assert fetch(session.connection(), _INSERT_OUTBOX, partial) == []
    with db.transaction(readonly=True) as session:
        [stored] = fetch(session.connection(), _OUTBOX_BY_TYPE, {"type": "sql.defaults"})
    assert stored.event_id
    assert stored.payload == {}
    assert stored.created_at is not None


def test_a_unique_violation_on_the_cursor_path_is_an_integrity_error(db):
    """What conflict_on turns into a SCIM 409 uniqueness: sqlalchemy's IntegrityError."""
    event_id = str(uuid.uuid4())
    with pytest.raises(sa.exc.IntegrityError), db.transaction() as session:
        fetch(session.connection(), _INSERT_OUTBOX, _outbox_row(event_id, "sql.twice"))
        fetch(session.connection(), _INSERT_OUTBOX, _outbox_row(event_id, "sql.twice"))
    with db.transaction(readonly=True) as session:
        assert fetch(session.connection(), _OUTBOX_BY_TYPE, {"type": "sql.twice"}) == []


_RETYPE_OUTBOX = (_OUTBOX.update().where(_OUTBOX.c.event_id == sa.bindparam("b_id"))
                  .values(type=sa.bindparam("b_type")))
_RETYPE_OUTBOX_RETURNING = _RETYPE_OUTBOX.returning(_OUTBOX.c.event_id, _OUTBOX.c.type)
_DELETE_OUTBOX = _OUTBOX.delete().where(_OUTBOX.c.type == sa.bindparam("b_type"))
_TEXT_COUNT = sa.text("SELECT count(*) AS n FROM outbox_events WHERE type = :b_type")


def test_fetch_knows_which_statements_give_rows(db):
    """Rows come from a SELECT and from RETURNING, none from an UPDATE or DELETE without
    RETURNING (known when compiled, without asking the cursor); textual SQL, whose result
    columns only the cursor knows, takes ``Connection.execute``."""
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    with db.transaction() as session:
        connection = session.connection()
        for event_id in (first, second):
            fetch(connection, _INSERT_OUTBOX, _outbox_row(event_id, "sql.kinds"))
        assert _compile(_RETYPE_OUTBOX, db.engine.dialect, None).gives_rows is False
        assert fetch(connection, _RETYPE_OUTBOX, {"b_id": first, "b_type": "sql.kept"}) == []
        assert [tuple(r) for r in fetch(connection, _RETYPE_OUTBOX_RETURNING,
                                        {"b_id": second, "b_type": "sql.kept"})] == [
            (second, "sql.kept")]
        assert _compile(_TEXT_COUNT, db.engine.dialect, None) is None
        assert [r.n for r in fetch(connection, _TEXT_COUNT, {"b_type": "sql.kept"})] == [2]
        assert fetch(connection, _DELETE_OUTBOX, {"b_type": "sql.kept"}) == []
        assert fetch(connection, _TEXT_COUNT, {"b_type": "sql.kept"})[0].n == 0


@pytest.mark.parametrize("value", [[], {}, [{"value": "a@b.c", "primary": True}], {"k": [1]},
                                   None, "", 0, ["ü"]])
def test_sqlite_json_text_is_what_json_dumps_writes(value):
    """The JSON serializer's shortcut for empty lists and objects changes no stored text."""
    from app.engine import json_dumps, json_loads

    assert json_dumps(value) == json.dumps(value)
    assert json_loads(json_dumps(value)) == value


@pytest.mark.parametrize(("text", "folded"), [
    ("Alice@ACME.com", "alice@acme.com"),
    ("ÖZIL Ärzte", "özil ärzte"),
    ("İpek", "ipek"),  # str.lower gives "i" + U+0307
    ("ΟΔΥΣΣΕΑΣ", "\u03bf\u03b4\u03c5\u03c3\u03c3\u03b5\u03b1\u03c3"),  # no final-sigma form
    ("ǅenan", "ǆenan"),
    ("", ""),
    ("JOSE\u0301 O\u0308zil", "jos\u00e9 \u00f6zil"),  # NFD: NFC first, as "JOSÉ ÖZIL"
    ("I\u0307pek", "ipek"),  # NFD of "İpek"
    ("\u212b\u2126", "\u00e5\u03c9"),  # Angstrom and Ohm signs: NFC makes them letters
    ("\ufb01 \u210c", "\ufb01 \u210c"),  # compatibility forms (NFKC) stay apart
])
def test_fold_text_is_the_fold_both_databases_compute(db, text, folded):
    """fold_text is NFC, then Unicode's simple lower-case mapping, and the database's own
    fold() (PostgreSQL's lower(normalize(x, NFC)), SQLite's roster_fold()) gives the same."""
    assert fold_text(text) == folded
    with db.engine.connect() as connection:
        assert connection.execute(sa.select(fold(sa.literal(text)))).scalar() == folded


def test_fetch_many_inserts_every_row_with_its_types_and_fails_whole(db):
    """fetch_many stores each row as execute would (JSON, timezone-aware datetimes), on the
    driver's executemany; a failing row is sqlalchemy's IntegrityError and, in the
    caller's transaction, leaves none of the batch behind."""
    rows = [_outbox_row(str(uuid.uuid4()), "sql.many") for _ in range(3)]
    with db.transaction() as session:
        fetch_many(session.connection(), _INSERT_OUTBOX, rows)
    with db.transaction(readonly=True) as session:
        stored = fetch(session.connection(), _OUTBOX_BY_TYPE, {"type": "sql.many"})
    assert sorted(s.event_id for s in stored) == sorted(r["event_id"] for r in rows)
    assert all(s.payload == {"n": 1, "list": ["a"]} for s in stored)
    assert {s.created_at for s in stored} == {r["created_at"] for r in rows}
    again = [_outbox_row(str(uuid.uuid4()), "sql.many.fail"), rows[0]]
    with pytest.raises(sa.exc.IntegrityError), db.transaction() as session:
        fetch_many(session.connection(), _INSERT_OUTBOX, again)
    with db.transaction(readonly=True) as session:
        assert fetch(session.connection(), _OUTBOX_BY_TYPE, {"type": "sql.many.fail"}) == []


@pytest.mark.parametrize("count", [1, 2, 3, 128, 200])
def test_fetch_many_keeps_order_and_values_in_few_statements(db, count):
    """Every row stored, in the order given (ascending ids), with its values. On SQLite the
    rows go in multi-row INSERTs of 2^k rows (200: 128 + 64 + 8), not one statement per
    row: executemany steps once per row and hands the GIL over at each step, which made
    the flight recorder's writer hold SQLite's write lock many times as long."""
    kind = f"sql.many.{count}"
    rows = [{**_outbox_row(str(uuid.uuid4()), kind), "payload": {"i": i, "s": "é\"'" * i}}
            for i in range(count)]
    rows[0]["aggregate_id"] = None
    rows[-1]["aggregate_id"] = "last"
    traced: list[str] = []
    with db.transaction() as session:
        connection = session.connection()
        dbapi = connection.connection.dbapi_connection
        if db.engine.dialect.name == "sqlite":
            dbapi.set_trace_callback(traced.append)
        try:
            fetch_many(connection, _INSERT_OUTBOX, rows)
        finally:
            if db.engine.dialect.name == "sqlite":
                dbapi.set_trace_callback(None)
    with db.engine.connect() as connection:
        stored = connection.execute(
            sa.select(_OUTBOX.c.event_id, _OUTBOX.c.payload, _OUTBOX.c.aggregate_id,
                      _OUTBOX.c.created_at).where(_OUTBOX.c.type == kind)
            .order_by(_OUTBOX.c.id)).all()
    assert [tuple(s) for s in stored] == [
        (r["event_id"], r["payload"], r["aggregate_id"], r["created_at"]) for r in rows]
    if db.engine.dialect.name == "sqlite":
        inserts = [t for t in traced if t.startswith("INSERT")]
        assert len(inserts) == bin(count).count("1")


@pytest.mark.parametrize("value", [
    2**64 - 1, 2**64, 2**70 + 1, -(2**63), -(2**63) - 1, -(2**70) - 1,
    {"n": [10**25 + 3, "x"]}, 0.1 + 0.2, 1e308, -0.0, float("nan"), "\ud800",
    {"id": "12345678901234567890"}, ["é", "\u0000"], {"a": {"b": [True, None, 1.5]}},
])
def test_json_loads_reads_back_exactly_what_json_dumps_wrote(value):
    """orjson reads most stored JSON, but it reads an integer past 64 bits as a float and
    refuses NaN and lone surrogates: each value still reads back as the standard library
    reads it, of the same type (str from SQLite, bytes from psycopg)."""
    from app.engine import json_dumps, json_loads

    text = json_dumps(value)
    for stored in (text, text.encode()):
        assert repr(json_loads(stored)) == repr(json.loads(text))
