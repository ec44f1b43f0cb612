"""Settings sources that cannot be read and values out of range: one configuration error
naming the setting, never a traceback, never the bytes of a secret file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import SettingsError, load_settings

ROSTER = str(Path(sys.executable).parent / "roster")


def test_a_config_file_that_is_a_directory_is_one_line(tmp_path):
    """ROSTER_CONFIG naming a directory: IsADirectoryError's traceback before."""
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={"ROSTER_CONFIG": str(tmp_path)})
    assert raised.value.problems == [f"config file {tmp_path} cannot be read: Is a directory"]


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path):
    """TOML is UTF-8: a Latin-1 file was a UnicodeDecodeError traceback."""
    path = tmp_path / "roster.toml"
    path.write_bytes('[app]\nbase_url = "https://m\xfcnchen.example"\n'.encode("latin-1"))
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={"ROSTER_CONFIG": str(path)})
    assert raised.value.problems == [
        f"config file {path} is not valid TOML: not UTF-8 (line 2)"]


def test_a_secret_file_that_is_not_utf8_is_named_not_shown(tmp_path):
    """A binary key file behind ROSTER_..._FILE: one line naming the variable, without its
    bytes (a UnicodeDecodeError traceback quoted them)."""
    path = tmp_path / "key.der"
    path.write_bytes(b"\x30\x82\xff\xfesecret-bytes")
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={"ROSTER_APP__SECRET_KEY_FILE": str(path)})
    assert len(raised.value.problems) == 1
    assert raised.value.problems[0].startswith(
        "ROSTER_APP__SECRET_KEY_FILE: the file is not UTF-8 text")
    assert "secret-bytes" not in str(raised.value)


def test_the_cli_says_so_in_one_line_and_exits_1(tmp_path):
    """The same through `roster`: exit 1, the configuration error alone on stderr."""
    result = subprocess.run([ROSTER, "org", "list"], capture_output=True, text=True,
                            env={"ROSTER_CONFIG": str(tmp_path), "PATH": "/usr/bin:/bin"},
                            timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"roster: configuration error: config file {tmp_path} "
                                     "cannot be read: Is a directory")


@pytest.mark.parametrize(("name", "value", "problem"), [
    # A SQLite writer's wait for the lock failed at its first write (ValueError, OverflowError).
    ("ROSTER_DATABASE__SQLITE_BUSY_TIMEOUT_MS", "-5",
     "database.sqlite_busy_timeout_ms must not be negative"),
    ("ROSTER_DATABASE__SQLITE_BUSY_TIMEOUT_MS", "99999999999999999999",
     "database.sqlite_busy_timeout_ms must be at most 2147483647"),
    # Advertised in ServiceProviderConfig as such, and every Bulk request refused.
    ("ROSTER_SCIM__BULK_MAX_OPERATIONS", "-1", "scim.bulk_max_operations must be positive"),
    ("ROSTER_SCIM__BULK_MAX_PAYLOAD_BYTES", "0",
     "scim.bulk_max_payload_bytes must be positive"),
    # The mass-deprovisioning guard silently off (a window in the future counts nothing).
    ("ROSTER_LIFECYCLE__MASS_WINDOW_SECONDS", "-600",
     "lifecycle.mass_window_seconds must be positive"),
    ("ROSTER_LIFECYCLE__MASS_SHARE_PERCENT", "-3",
     "lifecycle.mass_share_percent must be between 0 and 100"),
    ("ROSTER_LIFECYCLE__MASS_SHARE_PERCENT", "101",
     "lifecycle.mass_share_percent must be between 0 and 100"),
    ("ROSTER_LIFECYCLE__MASS_COUNT", "0", "lifecycle.mass_count must be positive"),
    ("ROSTER_LIFECYCLE__MASS_MIN_COUNT", "-1", "lifecycle.mass_min_count must not be negative"),
    # A retry at once, over and over, for a failing receiver.
    ("ROSTER_WEBHOOKS__RETRY_BASE_SECONDS", "-1", "webhooks.retry_base_seconds must be positive"),
    ("ROSTER_WEBHOOKS__RETRY_MAX_SECONDS", "0", "webhooks.retry_max_seconds must be positive"),
    ("ROSTER_SIGNING__CHECKPOINT_INTERVAL_SECONDS", "-1",
     "signing.checkpoint_interval_seconds must not be negative"),
    ("ROSTER_TOKENS__SCIM_TOKEN_DAYS", "-1", "tokens.scim_token_days must not be negative"),
    # Past 100 years a timedelta or a date overflowed at first use (`roster lifecycle purge`,
    # `roster events purge`, `roster worker`: OverflowError).
    ("ROSTER_LIFECYCLE__RETENTION_DAYS", "999999999999",
     "lifecycle.retention_days must be at most 36500"),
    ("ROSTER_EVENTS__RETENTION_DAYS", "36501", "events.retention_days must be at most 36500"),
    ("ROSTER_SSO__METADATA_REFRESH_HOURS", "999999999999",
     "sso.metadata_refresh_hours must be at most 876000"),
    ("ROSTER_TOKENS__SCIM_TOKEN_DAYS", "999999999", "tokens.scim_token_days must be at most 36500"),
    ("ROSTER_OIDC_PROVIDER__REFRESH_TOKEN_SECONDS", "9" * 12,
     "oidc_provider.refresh_token_seconds must be at most 3153600000"),
    ("ROSTER_MAPPING__WRITE_WAIT_MS", "2147483648",
     "mapping.write_wait_ms must be at most 2147483647"),
])
def test_more_values_out_of_range_stop_the_start(name, value, problem):
    """Counts, lifetimes and timeouts that passed the start and misbehaved later."""
    with pytest.raises(SettingsError, match=re.escape(problem)):
        load_settings(environ={name: value})


def test_a_scim_token_lifetime_of_0_days_is_taken_as_documented():
    """config/defaults.toml: "0 means it never expires" (tokens.issue_token stores no expiry
    then); the start refused it as not positive. A busy timeout of 0 and no checkpoints
    are valid too."""
    settings = load_settings(environ={"ROSTER_TOKENS__SCIM_TOKEN_DAYS": "0",
                                      "ROSTER_DATABASE__SQLITE_BUSY_TIMEOUT_MS": "0",
                                      "ROSTER_SIGNING__CHECKPOINT_INTERVAL_SECONDS": "0"})
    assert settings["tokens"]["scim_token_days"] == 0


@pytest.mark.parametrize(("value", "shown"), [
    ("not a url", "'not a url'"), ("ftp://roster.example", "'ftp://roster.example'"),
    ("https://roster.example/?tenant=1", "'https://roster.example/?tenant=1'"),
    ("https://roster.example:https", "'https://roster.example:https'"),
    ("https://[::1", "a value that is not a URL (not shown)"),
])
def test_a_base_url_that_is_no_web_url_stops_the_start(value, shown):
    """The SCIM base URL, SAML entity ids and the OIDC issuer are built on app.base_url:
    `roster directory create` printed "not a url/scim/v2" for the IdP."""
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={"ROSTER_APP__BASE_URL": value})
    assert raised.value.problems == [
        "app.base_url must be an absolute http(s) URL without query or fragment "
        f"(https://roster.example.com), got {shown}"]


def test_a_base_url_with_a_path_is_taken():
    """Behind a proxy under a prefix: https://portal.example/roster/."""
    settings = load_settings(environ={"ROSTER_APP__BASE_URL": "https://portal.example/roster/"})
    assert settings["app"]["base_url"] == "https://portal.example/roster/"


def test_a_redirect_entry_that_does_not_split_is_one_line():
    """An unclosed IPv6 literal in sso.allowed_redirect_urls: urlsplit's ValueError was a
    traceback on every command; now named, and not repeated (it could hold credentials)."""
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={"ROSTER_SSO__ALLOWED_REDIRECT_URLS": "https://u:pw@[::1/cb"})
    assert raised.value.problems == [
        "sso.allowed_redirect_urls entries must be absolute http(s) URLs, got a value that "
        "is not a URL (not shown)"]


@pytest.mark.parametrize("source", ["env-json", "toml-array"])
def test_webhook_urls_may_be_a_json_or_toml_array(tmp_path, source):
    """README: a list setting is comma-separated or a JSON array of strings, and its example
    is ROSTER_WEBHOOKS__URLS; the array was taken as one URL and refused as `roster worker`
    started, and a TOML array in ROSTER_CONFIG was 'must be str'."""
    urls = ["http://127.0.0.1:9/a", "http://127.0.0.1:9/b?token=t0k3n"]
    environ = {"ROSTER_WEBHOOKS__SECRET": "s3cret"}
    if source == "env-json":
        environ["ROSTER_WEBHOOKS__URLS"] = json.dumps(urls)
    else:
        config = tmp_path / "roster.toml"
        config.write_text(f"[webhooks]\nurls = {json.dumps(urls)}\n")
        environ["ROSTER_CONFIG"] = str(config)
    assert load_settings(environ=environ)["webhooks"]["urls"] == ",".join(urls)


@pytest.mark.parametrize(("value", "shown"), [
    ("ftp://u:pw@hooks.example/in", "'ftp://***@hooks.example/in'"),
    ("http://[::1/in?token=t0k3n", "a value that is not a URL (not shown)"),
    ("http://127.0.0.1:9/ok,hooks.example/in", "'hooks.example/in'"),
])
def test_webhook_urls_that_cannot_be_posted_to_stop_the_start(value, shown):
    """Checked at start, like every other URL setting, masked: they were checked only as
    `roster worker` started, and one that does not split was a traceback there."""
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={"ROSTER_WEBHOOKS__URLS": value,
                               "ROSTER_WEBHOOKS__SECRET": "s3cret"})
    assert raised.value.problems == [
        "webhooks.urls entries must be absolute http(s) URLs in ASCII (a host in IDNA form, "
        f"the rest percent-encoded), got {shown}"]
    assert "pw" not in str(raised.value)
    assert "t0k3n" not in str(raised.value)


def test_a_setting_given_twice_in_the_environment_is_refused(tmp_path):
    """ROSTER_APP__SECRET_KEY and ..._FILE both set: whichever came later in the
    environment won, silently (a key rotated in the file, the old one still in a variable).
    An empty variable beside the other is no second value."""
    path = tmp_path / "secret_key"
    path.write_text("k" * 40)
    both = {"ROSTER_APP__SECRET_KEY": "s" * 40, "ROSTER_APP__SECRET_KEY_FILE": str(path)}
    for environ in (both, dict(reversed(both.items()))):
        with pytest.raises(SettingsError) as raised:
            load_settings(environ=environ)
        assert raised.value.problems == [
            "ROSTER_APP__SECRET_KEY and ROSTER_APP__SECRET_KEY_FILE both set app.secret_key: "
            "set only one"]
        assert "k" * 40 not in str(raised.value)
    settings = load_settings(environ={**both, "ROSTER_APP__SECRET_KEY": ""})
    assert settings["app"]["secret_key"] == "k" * 40
