"""The role catalog file (config/roles.toml) as app/mapping/catalog.py reads it: no key a
role does not take passes unnoticed."""

from __future__ import annotations

import pytest

from app.errors import InvalidInput
from app.mapping.catalog import load_catalog
from tests.conftest import ROOT

BUYER = '[roles.buyer]\nname = "Buyer"\npermissions = ["orders.place"]\n'


def test_the_shipped_catalog_loads():
    """config/roles.toml is valid: the six standard roles."""
    keys = [spec.key for spec in load_catalog(ROOT / "config" / "roles.toml")]
    assert keys == ["administrator", "buyer", "approver", "finance", "technician",
                    "quote_only"]


@pytest.mark.parametrize(("text", "said"), [
    ('[roles.buyer]\nname = "Buyer"\npermision = ["orders.place"]\n',
     "role buyer: unknown key permision"),
    (BUYER + 'descripton = "Orders"\n', "role buyer: unknown key descripton"),
    (BUYER + '[role.finance]\nname = "Finance"\n', "unknown key role"),
    ('roles = ["buyer"]\n', "roles must be a table of roles"),
    ('[roles]\nbuyer = "Buyer"\n', "role buyer must be a table"),
])
def test_a_catalog_key_no_role_takes_is_refused_naming_it(tmp_path, text, said):
    """A typo such as `permision` made a role with no permissions at all (the key was
    ignored), `descripton` a role without its description, and `[role.finance]` no role:
    each is refused naming the key, before any organization is seeded from the file."""
    path = tmp_path / "roles.toml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as refused:
        load_catalog(path)
    assert said in refused.value.detail
