"""The dialect report: which IdP quirks a directory needed, counted, and what that means.

Every request's normalisation notes (app/scim/dialect.py) are upserted per directory and
note; the report turns the counts into plain words for the customer's IT admin.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.models.scim_ops import DialectNote
from app.scim import dialect as d

# What each note means, said to an IT admin.
EXPLANATIONS: dict[str, str] = {
    d.CAPITALISED_OP: 'PATCH operation names arrive capitalised ("Replace", "Add", "Remove")',
    d.STRING_BOOLEAN: 'booleans arrive as the strings "True" / "False"',
    d.STRING_BOOLEAN_IN_FILTER: 'filters compare booleans with the strings "True" / "False" '
                                '(Entra\'s roles[primary eq "True"] mapping, in both dialects)',
    d.LEGACY_MEMBER_REMOVAL: 'group members are removed with path "members" and a value list',
    d.UNQUOTED_FILTER_VALUE: "filter values arrive unquoted (externalId eq abc)",
    d.CAPITALISED_ATTRIBUTE: "attribute names arrive capitalised (UserName, DisplayName)",
    d.STRAY_ID: 'PATCH bodies carry a stray top-level "id"',
    d.OPERATION_NAME: 'PATCH operations carry a non-standard "name" member',
    d.BARE_STRING_MANAGER: "the manager arrives as a bare string instead of {\"value\": id}",
    d.EMPTY_VALUE_CLEARS: 'empty strings or nulls are sent to clear attributes',
    d.PATHLESS_DOTTED_KEYS: "path-less PATCH values carry dotted or URN-prefixed keys",
    d.OKTA_PUT_UPDATE: "Okta PUT updates seen (a GET followed by a PUT of the full user)",
    d.PATHLESS_ACTIVE: 'deactivation and reactivation arrive as a path-less PATCH '
                       '{"active": false} / {"active": true}',
    d.EXTENSION_SCHEMAS: 'extension blocks repeat "schemas" inside them (ignored)',
    d.MEMBERS_REPLACE_ALL: "group members are replaced with the full list (Okta Group Push)",
    d.ENTRA_FLAG: "requests arrive on a tenant URL with Entra's aadOptscim062020 flag, "
                  "which asks for its compliant dialect",
}
# Signs of the dialect that aadOptscim062020 switches off. Entra sends the manager as a bare
# string with the flag set as well (the flag changes four request kinds, not that one), so
# BARE_STRING_MANAGER tells nothing about the flag; nor does a "True" in a filter
# (STRING_BOOLEAN_IN_FILTER), which comes from the name of an attribute mapping.
LEGACY_ENTRA = frozenset({d.CAPITALISED_OP, d.STRING_BOOLEAN, d.LEGACY_MEMBER_REMOVAL,
                          d.STRAY_ID, d.OPERATION_NAME})
# The flag names the compliant dialect: a tenant that sends it is Entra, and its path-less
# {"active": false} (Okta's sign too) does not make it Okta.
COMPLIANT_ENTRA = frozenset({d.PATHLESS_DOTTED_KEYS, d.ENTRA_FLAG})
OKTA = frozenset({d.OKTA_PUT_UPDATE, d.PATHLESS_ACTIVE, d.MEMBERS_REPLACE_ALL})


@dataclass(frozen=True)
class NoteCount:
    """How often one normalisation fired for a directory."""

    note: str
    count: int
    first_seen_at: datetime
    last_seen_at: datetime


@functools.cache
def _upsert(dialect_name: str) -> Any:
    """One statement per database, built once so SQLAlchemy compiles it once."""
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    stmt = insert(DialectNote)
    return stmt.on_conflict_do_update(
        index_elements=["directory_id", "note"],
        set_={"count": DialectNote.count + stmt.excluded.count,
              "last_seen_at": stmt.excluded.last_seen_at},
    )


def count_notes(session: Session | Connection,
                records: Iterable[tuple[str, Iterable[str], datetime]]) -> None:
    """Count the notes of ``records`` (directory id, the request's notes, when it came),
    each distinct note once per request, in one upsert per directory and note: a batch
    of the flight recorder's records with the same notes (an Entra tenant's PATCHes) moves
    each counter once, by how many requests had it, not once per request."""
    counts: dict[tuple[str, str], list[Any]] = {}
    for directory_id, notes, seen in records:
        for note in set(notes):
            entry = counts.get((directory_id, note))
            if entry is None:
                counts[(directory_id, note)] = [1, seen, seen]
            else:
                entry[0] += 1
                entry[1], entry[2] = min(entry[1], seen), max(entry[2], seen)
    if not counts:
        return
    bind = session if isinstance(session, Connection) else session.get_bind()
    session.execute(_upsert(bind.dialect.name), [
        {"directory_id": directory_id, "note": note, "count": count, "first_seen_at": first,
         "last_seen_at": last}
        for (directory_id, note), (count, first, last) in sorted(counts.items())
    ])


def note_counts(session: Session, directory_id: str) -> list[NoteCount]:
    """The directory's counters, most frequent first."""
    rows = session.scalars(select(DialectNote).where(DialectNote.directory_id == directory_id)
                           .order_by(DialectNote.count.desc(), DialectNote.note))
    return [NoteCount(r.note, r.count, r.first_seen_at, r.last_seen_at) for r in rows]


def infer_dialect(notes: Iterable[str]) -> tuple[str, str]:
    """A label and one sentence of advice from the notes seen so far."""
    seen = set(notes)
    legacy, compliant, okta = seen & LEGACY_ENTRA, seen & COMPLIANT_ENTRA, seen & OKTA
    if legacy and compliant:
        return ("entra-mixed",
                "this tenant sends both Entra dialects (provision-on-demand ignores the "
                "aadOptscim062020 flag); both are accepted")
    if legacy:
        return ("entra-legacy",
                "this tenant sends the legacy Entra dialect: add aadOptscim062020 to the "
                "tenant URL (…/scim/v2?aadOptscim062020) to switch it to the compliant one")
    if compliant:
        return ("entra-compliant",
                "this tenant sends the compliant Entra dialect (aadOptscim062020 is set)")
    if okta:
        return "okta", "this tenant speaks Okta's SCIM 2.0 dialect: " + "; ".join(
            EXPLANATIONS[n] for n in sorted(okta))
    if seen:
        return "scim-with-quirks", "this tenant needed a few normalisations, listed below"
    return "standard", "no dialect normalisation was needed so far"


def dialect_report(session: Session, directory_id: str) -> dict[str, Any]:
    """The report as data: the label, its advice, and every counter explained."""
    counts = note_counts(session, directory_id)
    label, advice = infer_dialect(c.note for c in counts)
    return {
        "directory_id": directory_id,
        "dialect": label,
        "summary": advice,
        "notes": [{
            "note": c.note, "count": c.count,
            "meaning": EXPLANATIONS.get(c.note, c.note.replace("_", " ")),
            "first_seen_at": c.first_seen_at.isoformat(),
            "last_seen_at": c.last_seen_at.isoformat(),
        } for c in counts],
    }
