"""Settings as `roster serve` hands them to gunicorn: exported in the environment, over a
config file."""

from __future__ import annotations

import pytest

from app.settings import SettingsError, load_settings


def test_an_environment_value_is_read_as_its_defaults_type_whatever_the_file_says(tmp_path):
    """`roster serve` exports ROSTER_SERVER__TIMEOUT; a config file whose server.timeout had
    the wrong type made that valid "30" a string, and the start (or a SIGHUP reload) was
    refused with "server.timeout must be int, got '30'", blaming the wrong value. The
    environment's 30 wins; without it the file's value is the one named."""
    config = tmp_path / "roster.toml"
    config.write_text('[server]\ntimeout = "x"\n')
    settings = load_settings(environ={"ROSTER_CONFIG": str(config),
                                      "ROSTER_SERVER__TIMEOUT": "30"})
    assert settings["server"]["timeout"] == 30
    with pytest.raises(SettingsError) as refused:
        load_settings(environ={"ROSTER_CONFIG": str(config)})
    assert refused.value.problems == ["server.timeout must be int, got 'x'"]


@pytest.mark.parametrize(("line", "secret"), [
    ("raw_env: ['ROSTER_APP__SECRET_KEY=S3cretKeyValue']", "S3cretKeyValue"),
    ("raw_env: ['ROSTER_SIGNING__PRIVATE_KEY=MC4CAQAwBQYDK2VwBCIEI']", "MC4CAQAwBQYDK2VwBCIEI"),
    ("key: -----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----",
     "MC4CAQAwBQYDK2VwBCIEI"),
    ("'-----BEGIN RSA PRIVATE KEY-----\\nMIIEowIBAAKCAQEA\\n-----END RSA PRIVATE KEY-----'",
     "MIIEowIBAAKCAQEA"),
])
def test_secret_keys_and_private_keys_are_masked(line, secret):
    """A ``..._SECRET_KEY=`` or ``..._PRIVATE_KEY=`` value and a PEM private key, as
    gunicorn's configuration dump quotes the environment it was given."""
    from app.observability import redact

    assert secret not in redact(line)
