"""Names in Unicode over SCIM: canonically equivalent spellings (NFC and NFD) are one name."""

from __future__ import annotations

import unicodedata
import urllib.parse

import pytest

from tests.scim.support import Scim, assert_error, group_body, user_body

NFC = unicodedata.normalize("NFC", "José.Müller@acme.example")
NFD = unicodedata.normalize("NFD", NFC)


@pytest.fixture
def scim(client, tenant):
    """A SCIM client for the acme tenant."""
    return Scim(client, tenant)


def _filter(scim: Scim, resource: str, expression: str) -> list[dict]:
    response = scim.get(f"/{resource}?filter={urllib.parse.quote(expression)}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["Resources"]


def test_a_user_name_in_nfd_is_the_user_named_in_nfc(scim):
    """NFC and NFD spell one userName: the second create is 409, filters find either."""
    assert NFC != NFD
    created = scim.create_user(NFC)
    assert_error(scim.post("/Users", user_body(NFD.upper())), 409, "uniqueness")
    for spelling in (NFD, NFD.upper(), NFC.upper()):
        found = _filter(scim, "Users", f'userName eq "{spelling}"')
        assert [u["id"] for u in found] == [created["id"]], spelling
    assert [u["id"] for u in _filter(scim, "Users", 'userName sw "jose\u0301"')] == [created["id"]]


def test_a_group_name_in_nfd_is_the_group_named_in_nfc(scim):
    """displayName: ``Vertrieb Öst`` in NFD is the group ``Vertrieb Öst``."""
    name = "Vertrieb Östereich"
    scim.create_group(name)
    assert_error(scim.post("/Groups", group_body(unicodedata.normalize("NFD", name))),
                 409, "uniqueness")
