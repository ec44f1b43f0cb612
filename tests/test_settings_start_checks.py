"""Settings that passed the start and were wrong: a variable named with one underscore
where two separate section and key, and an audit signing key that is no Ed25519 key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from app.settings import ROOT, SettingsError, load_settings

ROSTER = str(Path(sys.executable).parent / "roster")


def _pem(key: ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.mark.parametrize(("name", "meant"), [
    ("ROSTER_DATABASE_URL", "ROSTER_DATABASE__URL"),
    ("ROSTER_APP_SECRET_KEY_FILE", "ROSTER_APP__SECRET_KEY_FILE"),
    ("ROSTER_OIDC_PROVIDER_SIGNING_KEY_FILE", "ROSTER_OIDC_PROVIDER__SIGNING_KEY_FILE"),
    ("ROSTER_Server_Workers", "ROSTER_SERVER__WORKERS"),
])
def test_a_setting_named_with_one_underscore_is_refused_naming_the_variable_meant(name, meant):
    """ROSTER_DATABASE_URL (the usual spelling elsewhere) was skipped without a word: every
    command ran on the default SQLite file, `roster db upgrade` migrated that one, and the
    server served an empty database beside the PostgreSQL the operator had named."""
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={name: "postgresql+psycopg://roster:pw-s3cret@db/roster"})
    assert raised.value.problems == [
        f"{name} is not read: a setting's variable separates section and key with two "
        f"underscores ({meant})"]
    assert "s3cret" not in str(raised.value)


def test_roster_variables_that_are_no_settings_are_left_alone():
    """Roster's home, its config file and the test suite's variables are not settings."""
    settings = load_settings(environ={
        "ROSTER_HOME": str(ROOT), "ROSTER_CONFIG": "", "ROSTER_TEST_PG_URL": "x",
        "ROSTER_TEST_WORKERS": "2", "ROSTER_METRICS_TMPDIR": "/tmp/x",
        "ROSTER_DATABASE_URLS": "x"})  # no such setting: not a misspelt one either
    assert settings["database"]["url"] == "sqlite:///var/roster.db"


@pytest.mark.parametrize("value", [
    "not a key at all",
    "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----\n",
    _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
])
def test_a_signing_key_that_is_no_ed25519_private_key_stops_the_start(value):
    """signing.private_key was only checked for being set: a bad one passed the start, the
    server served on, and receipts (GET /api/v1/deprovisions/.../receipt) were refused with
    a 400 naming the operator's setting, checkpoints never signed. The key is not shown."""
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={"ROSTER_SIGNING__PRIVATE_KEY": value})
    assert raised.value.problems == [
        "signing.private_key must be an unencrypted PEM Ed25519 private key (openssl genpkey "
        "-algorithm ed25519); the value set is not (it is not shown)"]
    assert "MC4CAQ" not in str(raised.value)


def test_a_signing_key_from_a_file_is_checked_too(tmp_path):
    """..._FILE holding something else (a public key) is the same configuration error; a
    real Ed25519 key is taken."""
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "ed25519.pem"
    path.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(SettingsError, match=r"signing\.private_key must be an unencrypted PEM"):
        load_settings(environ={"ROSTER_SIGNING__PRIVATE_KEY_FILE": str(path)})
    path.write_text(_pem(key))
    settings = load_settings(environ={"ROSTER_SIGNING__PRIVATE_KEY_FILE": str(path)})
    assert settings["signing"]["private_key"] == _pem(key).strip()


def test_the_cli_stops_at_start_on_either(tmp_path):
    """Through `roster`: exit 1, the configuration error alone, no database touched."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTER_")}
    env.update({"ROSTER_DATABASE_URL": f"sqlite:///{tmp_path}/meant.db",
                "ROSTER_SIGNING__PRIVATE_KEY": "garbage"})
    result = subprocess.run([ROSTER, "db", "upgrade"], capture_output=True, text=True,
                            env=env, cwd=tmp_path, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "roster: configuration error: ROSTER_DATABASE_URL is not read: a setting's variable "
        "separates section and key with two underscores (ROSTER_DATABASE__URL)",
        "roster: configuration error: signing.private_key must be an unencrypted PEM Ed25519 "
        "private key (openssl genpkey -algorithm ed25519); the value set is not (it is not "
        "shown)"]
    assert list(tmp_path.iterdir()) == []  # not even the default var/roster.db


def test_an_empty_file_variable_alone_says_it_is_empty():
    """ROSTER_DATABASE__URL_FILE= (a template whose variable was unset) read the working
    directory: "cannot read secret file: Is a directory". It names what is missing now; an
    empty one beside the variable itself still does not count."""
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={"ROSTER_DATABASE__URL_FILE": ""})
    assert raised.value.problems == [
        "ROSTER_DATABASE__URL_FILE is empty: name the file that holds database.url, or "
        "unset the variable"]
    settings = load_settings(environ={"ROSTER_DATABASE__URL_FILE": "",
                                      "ROSTER_DATABASE__URL": "sqlite:///x.db"})
    assert settings["database"]["url"] == "sqlite:///x.db"
