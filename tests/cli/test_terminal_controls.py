"""Names a tenant chose reach the operator's terminal escaped, never as control sequences.

A customer admin names directories and units over the API; `roster directory list` and
`roster unit list` printed those names raw, so ESC ] 52 (OSC 52) in a directory name wrote
the operator's clipboard, ESC ] 0 retitled the window and U+202E reversed what followed.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.api.conftest import make_key
from tests.conftest import flush_recorder
from tests.lifecycle.support import roster

OSC_52 = "\x1b]52;c;cm0gLXJmIH4=\x07"  # "set the clipboard to 'rm -rf ~'"


def stored_name(db, table: str, response, name: str) -> None:
    """Give the row the API just made ``name``, as a name stored before names with control
    characters were refused (app/visible_names.py) still is: the CLI must print it
    escaped. A unit's path (a top-level unit's is its name) follows."""
    assert response.status_code == 201, response.get_json()
    path = ", path = :name" if table == "units" else ""
    with db.engine.begin() as conn:
        conn.execute(text(f"UPDATE {table} SET name = :name{path} WHERE id = :id"),
                     {"name": name, "id": response.get_json()["id"]})


def test_tenant_names_are_printed_with_their_controls_escaped(client, db, database_url,
                                                             tenant):
    """The tenant's admin names them; the operator lists them."""
    headers = make_key(db, "admin", tenant.org).headers
    stored_name(db, "directories", client.post("/api/v1/orgs/acme/directories",
                                               headers=headers, json={
        "vendor": "entra", "name": "hr"}), f"hr{OSC_52}")
    stored_name(db, "units", client.post("/api/v1/orgs/acme/units", headers=headers, json={
        "name": "Sales", "kind": "department"}), "Sales\u202eevil\x9b2J")
    listed = roster(database_url, "directory", "list", "--org", "acme").output
    assert "\x1b" not in listed
    assert "hr\\x1b]52;c;cm0gLXJmIH4=\\x07" in listed
    assert "okta" in listed
    units = roster(database_url, "unit", "list", "--org", "acme").output
    assert "\u202e" not in units
    assert "\x9b" not in units
    assert "Sales\\u202eevil\\x9b2J" in units
    # Ordinary non-ASCII text is printed as it is.
    assert client.post("/api/v1/orgs/acme/units", headers=headers, json={
        "name": "Zürich 東京", "kind": "location"}).status_code == 201
    assert "Zürich 東京" in roster(database_url, "unit", "list", "--org", "acme").output


def test_cli_messages_escape_tenant_and_idp_text(client, app, db, database_url, tenant):
    """Not only tables: confirmations, errors and the flight recorder's bodies too."""
    headers = make_key(db, "admin", tenant.org).headers
    stored_name(db, "directories", client.post("/api/v1/orgs/acme/directories",
                                               headers=headers, json={
        "vendor": "entra", "name": "hr"}), f"hr{OSC_52}")
    out = roster(database_url, "directory", "disable", "--directory", f"hr{OSC_52}",
                 "--org", "acme", "--yes").output
    assert "\x1b" not in out
    assert "directory hr\\x1b]52;c;cm0gLXJmIH4=\\x07 disabled" in out
    # A message quoting an admin-chosen connection name: a bidi override is refused in a
    # new name (app/visible_names.py), one stored before still prints escaped.
    made = client.post("/api/v1/orgs/acme/connections", headers=headers, json={
        "name": "sso", "protocol": "saml"})
    stored_name(db, "sso_connections", made, "sso\u202eevil")
    out = roster(database_url, "connection", "set", made.get_json()["id"],
                 "--no-idp-initiated").output
    assert "\u202e" not in out
    assert "connection sso\\u202eevil: policy scim" in out
    # What the IdP sent, as `directory requests --bodies` prints it.
    assert client.post("/scim/v2/Users", headers=tenant.headers, json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bidi@acme.test",
        "displayName": "Ann\u202elanimreT\u2066"}).status_code == 201
    flush_recorder(app)
    out = roster(database_url, "directory", "requests", tenant.directory.id, "--bodies").output
    assert "bidi@acme.test" in out
    assert "\u202e" not in out
    assert "\u2066" not in out


def test_table_columns_line_up_after_wide_and_combining_letters(client, db, database_url,
                                                               tenant):
    """A terminal shows 東京 two columns wide each and a combining accent in none: the
    columns after such names start where the header's do, not shifted by len()."""
    import unicodedata

    headers = make_key(db, "admin", tenant.org).headers
    for name in ("東京支社", unicodedata.normalize("NFD", "Zürich Süd"), "Basel"):
        assert client.post("/api/v1/orgs/acme/units", headers=headers, json={
            "name": name, "kind": "location"}).status_code == 201
    lines = roster(database_url, "unit", "list", "--org", "acme").output.splitlines()
    header = next(line for line in lines if line.upper() == line and "ID" in line)
    start = header.index("KIND") if "KIND" in header else None
    assert start is not None, header
    for line in lines:
        if any(name in unicodedata.normalize("NFC", line) for name in ("東京", "Zürich", "Basel")):
            shown, width = unicodedata.normalize("NFC", line), 0
            for offset, letter in enumerate(line):
                if width == start:
                    assert line[offset:].startswith("location"), (line, shown)
                    break
                width += 0 if unicodedata.combining(letter) else (
                    2 if unicodedata.east_asian_width(letter) in "WF" else 1)
            else:
                pytest.fail(f"no column starts under KIND in {line!r}")


def test_directional_marks_in_tenant_names_are_printed_escaped(client, db, database_url,
                                                               tenant):
    """The implicit directional marks (LRM U+200E, RLM U+200F, ALM U+061C, Unicode TR9
    §2.6) are bidi formatting characters too: one beside digits or punctuation moves them
    to the other side of a terminal line (Trojan Source, CVE-2021-42574). They were printed
    raw; now escaped as the overrides and isolates are."""
    headers = make_key(db, "admin", tenant.org).headers
    name = "Sales\u200f-1\u200e:\u061c2"
    assert client.post("/api/v1/orgs/acme/units", headers=headers, json={
        "name": name, "kind": "department"}).status_code == 201
    units = roster(database_url, "unit", "list", "--org", "acme").output
    for mark in ("\u200e", "\u200f", "\u061c"):
        assert mark not in units
    assert "Sales\\u200f-1\\u200e:\\u061c2" in units


# Line and paragraph separators (Zl, Zp), NEL (a C1 control), format characters (Cf: the
# byte order mark, zero-width space and joiners, soft hyphen, tag characters) and an
# unassigned code point: each breaks a table row in two in a terminal or a pager, or hides
# inside a name that then reads like another one.
_UNSEEN = ["\u2028", "\u2029", "\x85", "\ufeff", "\u200b", "\u200d", "\u00ad",
           "\U000e0041", "\u2064", "\U000e0fff"]


def test_line_separators_and_format_characters_are_printed_escaped(client, db, database_url,
                                                                   tenant):
    """A unit named with U+2028 (or U+2029, NEL, a BOM, a zero-width space ...) made a
    second table row of what followed it, or hid in the name; now every character of the
    Unicode categories Cc, Cf, Zl, Zp, Cs and Cn is shown escaped, in tables and messages."""
    headers = make_key(db, "admin", tenant.org).headers
    name = "Sales" + "|".join(_UNSEEN) + "end"
    # NEL (a C1 control) is refused in a new name; one stored before is still printed.
    stored_name(db, "units", client.post("/api/v1/orgs/acme/units", headers=headers, json={
        "name": name.replace("\x85", ""), "kind": "department"}), name)
    units = roster(database_url, "unit", "list", "--org", "acme").output
    for letter in _UNSEEN:
        assert letter not in units, ascii(letter)
    assert ("Sales\\u2028|\\u2029|\\x85|\\ufeff|\\u200b|\\u200d|\\xad|\\U000e0041|\\u2064|"
            "\\U000e0fff" "end") in units
    assert units.splitlines() == units.rstrip("\n").split("\n"), ascii(units)
    # A user name the IdP sent, as `user explain` quotes it.
    user_name = "ann\u2028bob@acme.test"
    assert client.post("/scim/v2/Users", headers=tenant.headers, json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name}).status_code == 201
    out = roster(database_url, "user", "explain", user_name, "--org", "acme").output
    assert "\u2028" not in out
    assert "ann\\u2028bob@acme.test" in out
    # Ordinary text, spaces included, is left as it is.
    assert client.post("/api/v1/orgs/acme/units", headers=headers, json={
        "name": "Zürich\u00a0Süd 東京", "kind": "location"}).status_code == 201
    assert "Zürich\u00a0Süd 東京" in roster(database_url, "unit", "list", "--org", "acme").output
