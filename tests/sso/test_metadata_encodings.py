"""`roster connection metadata import --file` reads IdP metadata in the encoding its byte
order mark or XML declaration names (XML 1.0 §4.3.3): an ISO-8859-1 or UTF-16 file (valid
XML) was read as UTF-8 text and refused with a traceback."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register
from tests.conftest import rows
from tests.sso import forge

register()

ENTITY = "https://idp.example/münchen"


@pytest.mark.parametrize("encoding", ["UTF-8", "ISO-8859-1", "UTF-16"])
def test_metadata_in_the_encoding_it_declares_is_imported(database_url, db, tenant, keys,
                                                          tmp_path, encoding):
    """The entity id with its ü, as the IdP wrote it, whatever the file's declared encoding."""
    env = {"ROSTER_DATABASE__URL": database_url}
    runner = CliRunner()
    created = runner.invoke(cli, ["connection", "create", "--org", "acme", "--name", "s"],
                            env=env)
    conn_id = re.search(r"\(id ([0-9a-f-]{36})\)", created.output).group(1)
    document = forge.idp_metadata([keys.idp.cert_b64], entity_id=ENTITY)
    path = tmp_path / "idp.xml"
    path.write_bytes(f'<?xml version="1.0" encoding="{encoding}"?>\n{document}'.encode(
        encoding.lower()))
    result = runner.invoke(cli, ["connection", "metadata", "import", conn_id, "--file",
                                 str(path)], env=env)
    assert result.exit_code == 0, result.output
    assert rows(db, "SELECT idp_entity_id FROM sso_connections")[0].idp_entity_id == ENTITY


def test_metadata_declaring_an_unknown_encoding_is_one_line(database_url, db, tenant, tmp_path):
    """An encoding Python does not know: named, exit 1."""
    env = {"ROSTER_DATABASE__URL": database_url}
    runner = CliRunner()
    created = runner.invoke(cli, ["connection", "create", "--org", "acme", "--name", "s"],
                            env=env)
    conn_id = re.search(r"\(id ([0-9a-f-]{36})\)", created.output).group(1)
    path = tmp_path / "idp.xml"
    path.write_bytes(b'<?xml version="1.0" encoding="x-roster-none"?><x/>')
    result = runner.invoke(cli, ["connection", "metadata", "import", conn_id, "--file",
                                 str(path)], env=env)
    assert result.exit_code == 1
    assert result.output.strip() == \
        "Error: IdP metadata declares an unknown encoding 'x-roster-none'"
