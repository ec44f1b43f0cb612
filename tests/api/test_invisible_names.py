"""Names made only of invisible characters, or holding a control character, are refused
like blank ones: a 400 naming the field, nothing written (app/visible_names.py)."""

from __future__ import annotations

import pytest

from tests.api.test_frame import assert_problem
from tests.conftest import rows

# str.strip() removes none of these: each passed the "not blank" checks and listed as nothing.
INVISIBLE = ["\u200b", "\u2060", "\ufeff", "\u00ad", "\u200b \u2060", "\u3164", "\u2800"]
CONTROLS = ["Sales\tEU", "Sales\x01", "Sales\nEU", "\x1b[31mRed"]
# Bidirectional embeddings, overrides and isolates reorder what is shown after them
# (Trojan Source, CVE-2021-42574): "Sales\u202eUE" lists as "SalesEU" read backwards.
BIDI = ["Sales\u202eUE", "Sales\u202dEU", "\u202aSales", "\u202bSales\u202c",
        "\u2066Sales\u2069", "Sales\u2067EU", "Sales\u2068EU"]


def _refused(response, why: str) -> None:
    body = assert_problem(response, 400, "validation")
    details = {e["field"]: e["detail"] for e in body["errors"]}
    assert why in details.get("name", ""), body


def _counts(db) -> dict[str, int]:
    return {t: rows(db, f"SELECT count(*) AS n FROM {t}")[0].n
            for t in ("organizations", "directories", "units", "roles", "sso_connections",
                      "api_keys")}


@pytest.mark.parametrize("name", INVISIBLE + CONTROLS + BIDI)
def test_every_name_endpoint_refuses_an_invisible_or_control_name(client, keys, tenant, db,
                                                                   name):
    """Organizations, directories, units, roles, connections and API keys: an invisible
    name (U+200B, U+2060, U+FEFF, a soft hyphen ...) or one with a control character (a
    tab, U+0001, ESC) or a bidirectional override or isolate (U+202A-U+202E,
    U+2066-U+2069) is a 400 naming ``name``; nothing is made."""
    why = ("visible character" if name in INVISIBLE else "control character"
           if name in CONTROLS else "bidirectional")
    before = _counts(db)
    org = f"/api/v1/orgs/{tenant.org.id}"
    for url, headers, body in (
            ("/api/v1/orgs", keys["operator"].headers, {"slug": "odd", "name": name}),
            (f"{org}/directories", keys["admin"].headers, {"vendor": "okta", "name": name}),
            (f"{org}/units", keys["admin"].headers, {"name": name, "kind": "department"}),
            (f"{org}/roles", keys["admin"].headers, {"key": "odd_role", "name": name}),
            (f"{org}/connections", keys["admin"].headers, {"name": name, "protocol": "oidc"}),
            ("/api/v1/apikeys", keys["operator"].headers,
             {"role": "auditor", "organization": tenant.org.slug, "name": name})):
        _refused(client.post(url, headers=headers, json=body), why)
    assert _counts(db) == before


@pytest.mark.parametrize("name", ["Einkauf\u00adsabteilung",
                                  "\U0001f469\u200d\U0001f4bb Devs", "\u200bSales",
                                  "Caf\u00e9 Paris", "\u05e2\u05d1\u05e8\u05d9\u05ea",
                                  "\u05e2\u05d1\u05e8\u05d9\u05ea\u200f 2"])
def test_a_visible_name_with_format_characters_is_kept_as_given(client, keys, tenant, name):
    """A format character inside a visible name (a soft hyphen, an emoji's zero width
    joiner, a right-to-left mark, which reorders nothing beyond its neighbours) is
    allowed, and the name is kept exactly."""
    response = client.post(f"/api/v1/orgs/{tenant.org.id}/units", headers=keys["admin"].headers,
                           json={"name": name, "kind": "department"})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["name"] == name
