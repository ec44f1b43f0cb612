"""Configuration: precedence of the four sources and every validation error."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from app.settings import ROOT, SettingsError, load_settings, worker_threads


def test_defaults_load_without_any_source():
    """The shipped defaults are valid on their own."""
    settings = load_settings(environ={})
    assert settings["database"]["url"] == "sqlite:///var/roster.db"
    assert settings["app"]["env"] == "development"


def test_precedence_file_then_env_then_overrides(tmp_path):
    """ROSTER_CONFIG beats defaults, env beats the file, overrides beat env."""
    config = tmp_path / "roster.toml"
    config.write_text('[server]\nworkers = 3\nbind = "0.0.0.0:9000"\n[scim]\nmax_page_size = 150\n')
    env = {"ROSTER_CONFIG": str(config), "ROSTER_SERVER__WORKERS": "5",
           "ROSTER_SCIM__MAX_PAGE_SIZE": "170"}
    settings = load_settings({"scim": {"max_page_size": 190}}, environ=env)
    assert settings["server"]["bind"] == "0.0.0.0:9000"  # from the file
    assert settings["server"]["workers"] == 5  # env over file
    assert settings["scim"]["max_page_size"] == 190  # overrides over env


def test_env_values_are_typed():
    """Booleans and integers from the environment are converted."""
    settings = load_settings(environ={"ROSTER_DATABASE__ECHO": "true",
                                      "ROSTER_DATABASE__POOL_SIZE": "7"})
    assert settings["database"]["echo"] is True
    assert settings["database"]["pool_size"] == 7


def test_float_and_list_values_from_env():
    """Floats and comma-separated lists from the environment are converted."""
    settings = load_settings(environ={"ROSTER_MAPPING__MAX_LOSS_SHARE": "0.35",
                                      "ROSTER_RECORDER__SENSITIVE_ATTRIBUTES": "password, title"})
    assert settings["mapping"]["max_loss_share"] == 0.35
    assert settings["recorder"]["sensitive_attributes"] == ["password", "title"]


def test_list_values_from_env_may_be_a_json_array():
    """A JSON array in the environment is a list of its strings: read as one comma-separated
    item, '["https://portal.example/"]' became a redirect target no page matched, and every
    login's return to the portal was refused."""
    settings = load_settings(environ={
        "ROSTER_SSO__ALLOWED_REDIRECT_URLS": '["https://portal.example/", "https://b.example/x"]'})
    assert settings["sso"]["allowed_redirect_urls"] == ["https://portal.example/",
                                                        "https://b.example/x"]


@pytest.mark.parametrize(("value", "problem"), [
    ('["https://portal.example/"', "must be comma-separated values or a JSON array"),
    ('[1, 2]', "must be comma-separated values or a JSON array"),
    ("portal.example/app", "entries must be absolute http(s) URLs, got 'portal.example/app'"),
    ("https://portal.example/,javascript:alert(1)", "got 'javascript:alert(1)'"),
    ("https:///nohost", "got 'https:///nohost'"),
])
def test_bad_redirect_allow_lists_stop_the_start(value, problem):
    """An allow-list entry that could match no page, or a malformed array, is a
    configuration error at start, not a login refused later without a word."""
    with pytest.raises(SettingsError, match=re.escape(problem)):
        load_settings(environ={"ROSTER_SSO__ALLOWED_REDIRECT_URLS": value})


def test_secret_from_file(tmp_path):
    """A secret may come from a file named by ..._FILE."""
    secret = tmp_path / "key"
    secret.write_text("s" * 40 + "\n")
    signing = tmp_path / "ed25519.pem"  # checked at start: an Ed25519 private key
    signing.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    settings = load_settings(environ={"ROSTER_APP__SECRET_KEY_FILE": str(secret),
                                      "ROSTER_APP__ENV": "production",
                                      "ROSTER_SIGNING__PRIVATE_KEY_FILE": str(signing)})
    assert settings["app"]["secret_key"] == "s" * 40


@pytest.mark.parametrize(
    ("environ", "file_text", "expected"),
    [
        ({"ROSTER_APP__ENV": "production"}, None, "app.secret_key is required in production"),
        ({"ROSTER_APP__ENV": "production"}, None, "signing.private_key is required"),
        ({"ROSTER_WEBHOOKS__URLS": "http://127.0.0.1:9/hook"}, None,
         "webhooks.secret is required"),
        ({}, "[signing]\nprivate_key = 'x'\n", "signing.private_key is a secret"),
        ({"ROSTER_DATABASE__URL": "not a url"}, None, "database.url is not a valid database URL"),
        ({"ROSTER_DATABASE__URL": "mysql://x@y/z"}, None,
         "database.url must be sqlite or postgresql"),
        ({"ROSTER_SERVER__COLOUR": "red"}, None,
         "unknown key server.colour in environment (ROSTER_SERVER__COLOUR)"),
        ({"ROSTER_Server__Colour": "red"}, None,
         "unknown key server.colour in environment (ROSTER_Server__Colour)"),
        ({"ROSTER_NOSUCH__X": "1", "ROSTER_NOSUCH__Y_FILE": "/k"}, None,
         "unknown section [nosuch] in environment (ROSTER_NOSUCH__X, ROSTER_NOSUCH__Y_FILE)"),
        ({"ROSTER_SERVER__WORKERS": "many"}, None, "ROSTER_SERVER__WORKERS must be an integer"),
        ({"ROSTER_SERVER__BIND": "0.0.0.0:http"}, None,
         "server.bind '0.0.0.0:http': 'http' is not a port number (0 to 65535)"),
        ({"ROSTER_DATABASE__ECHO": "maybe"}, None, "ROSTER_DATABASE__ECHO must be true or false"),
        ({"ROSTER_APP__ENV": "staging"}, None, "app.env must be one of"),
        ({"ROSTER_SERVER__WORKERS": "0"}, None, "server.workers must be positive"),
        ({"ROSTER_SERVER__THREADS": "-1"}, None, "server.threads must be between 0"),
        ({"ROSTER_SERVER__THREADS": "65"}, None, "server.threads must be between 0"),
        ({"ROSTER_APP__SECRET_KEY_FILE": "/nonexistent/key"}, None, "cannot read secret file"),
        ({}, "[nosuch]\nx = 1\n", "unknown section [nosuch]"),
        ({}, "[app]\nsecret_key = 'abc'\n", "app.secret_key is a secret"),
        ({}, "[server]\nworkers = 'two'\n", "server.workers must be int"),
        ({}, "[server\n", "is not valid TOML"),
        ({"ROSTER_WEBHOOKS__LEASE_SECONDS": "6"}, None,
         "webhooks.lease_seconds (6) must be greater than webhooks.timeout_seconds + 1 (6)"),
        ({"ROSTER_WEBHOOKS__LEASE_SECONDS": "2", "ROSTER_WEBHOOKS__TIMEOUT_SECONDS": "1"},
         None, "webhooks.lease_seconds (2) must be greater than"),
        ({"ROSTER_RATELIMIT__API": "abc"}, None, "ratelimit.api must look like '600/minute'"),
        ({"ROSTER_RATELIMIT__SCIM": "5/fortnight"}, None, "ratelimit.scim must look like"),
        ({"ROSTER_RATELIMIT__API": "0/minute"}, None, "(at least one request), got '0/minute'"),
        ({"ROSTER_RATELIMIT__STORAGE": "redis"}, None,
         "ratelimit.storage must be database or memory, got 'redis'"),
        ({"ROSTER_SSO__SP_KEY_FILE": "/nonexistent"}, None,
         "sso.sp_key_file and sso.sp_cert_file must be set together"),
        ({"ROSTER_SSO__SP_KEY_FILE": "/nonexistent", "ROSTER_SSO__SP_CERT_FILE": "/nonexistent"},
         None, "sso.sp_key_file: cannot read /nonexistent: No such file or directory"),
        ({"ROSTER_SSO__SP_NEXT_CERT_FILE": "/nonexistent"}, None,
         "sso.sp_next_key_file and sso.sp_next_cert_file must be set together"),
        ({"ROSTER_OIDC_PROVIDER__SIGNING_KEY_FILE": "/nonexistent"}, None,
         "oidc_provider.signing_key_file: cannot read /nonexistent"),
        ({"ROSTER_OIDC_PROVIDER__PUBLISHED_KEY_FILES": "/nonexistent"}, None,
         "oidc_provider.published_key_files: cannot read /nonexistent"),
        ({"ROSTER_SSO__IDP_FAILURE_BACKOFF_SECONDS": "0"}, None,
         "sso.idp_failure_backoff_seconds must be positive"),
        ({"ROSTER_SSO__IDP_FAILURE_BACKOFF_SECONDS": "60"}, None,
         "sso.idp_failure_backoff_max_seconds must not be less than "
         "sso.idp_failure_backoff_seconds"),
        ({"ROSTER_SSO__IDP_STALE_IF_ERROR_SECONDS": "-1"}, None,
         "sso.idp_stale_if_error_seconds must not be negative"),
        ({"ROSTER_SSO__IDP_FORCED_REFRESH_SECONDS": "0"}, None,
         "sso.idp_forced_refresh_seconds must be positive"),
        ({"ROSTER_SSO__IDP_FORCED_REFRESH_SECONDS": "9999999999"}, None,
         "sso.idp_forced_refresh_seconds must be at most"),
    ],
)
def test_each_validation_error_is_reported(tmp_path, environ, file_text, expected):
    """Every kind of bad configuration is named in one clear line."""
    if file_text is not None:
        path = tmp_path / "c.toml"
        path.write_text(file_text)
        environ = {**environ, "ROSTER_CONFIG": str(path)}
    with pytest.raises(SettingsError) as info:
        load_settings(environ=environ)
    assert any(expected in p for p in info.value.problems), info.value.problems


@pytest.mark.parametrize(
    ("environ", "threads"),
    [
        ({}, 1),  # the default database is a SQLite file
        ({"ROSTER_DATABASE__URL": "postgresql+psycopg://roster@db/roster"}, 4),
        ({"ROSTER_SERVER__THREADS": "3"}, 3),
        ({"ROSTER_SERVER__THREADS": "2",
          "ROSTER_DATABASE__URL": "postgresql+psycopg://roster@db/roster"}, 2),
    ],
)
def test_worker_threads_follow_the_database_unless_set(environ, threads):
    """server.threads = 0 means one thread per worker on SQLite and four on PostgreSQL."""
    assert worker_threads(load_settings(environ=environ)) == threads


def test_missing_config_file_is_reported():
    """A ROSTER_CONFIG that does not exist is a problem, not a silent default."""
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"ROSTER_CONFIG": "/nonexistent/roster.toml"})
    assert "does not exist" in info.value.problems[0]


def test_all_problems_are_reported_together():
    """Several problems give several lines at once."""
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"ROSTER_APP__ENV": "production",
                               "ROSTER_DATABASE__URL": "mysql://a@b/c"})
    assert len(info.value.problems) == 3  # secret key, signing key, database


def test_bad_configuration_stops_the_cli_with_one_line_per_problem():
    """The real `roster` process exits non-zero with plain lines and no traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTER_")}
    env.update({"ROSTER_APP__ENV": "production", "ROSTER_DATABASE__URL": "oracle://x/y"})
    proc = subprocess.run([sys.executable, "-c", "from app.cli import main; main()", "db",
                           "current"], env=env, capture_output=True, text=True, cwd=ROOT,
                          check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 3  # app.secret_key, signing.private_key, database.url
    assert all(line.startswith("roster: configuration error: ") for line in lines)
    assert "Traceback" not in proc.stderr


def test_secret_never_appears_in_validation_messages():
    """A database password in a bad URL is not echoed back."""
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"ROSTER_DATABASE__URL": "mysql://u:hunter2@h/d"})
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("value", ["portal-secret-in-clear", "A" * 63, "g" * 64,
                                   "a" * 64 + "\n", "\u00e9" * 64])
def test_the_portal_secret_is_configured_only_as_its_sha256(value):
    """Anything but 64 hex digits in portal_client_secret_sha256 (likely the secret itself)
    stops the start, and the message never repeats it; a digest in either case loads."""
    with pytest.raises(SettingsError) as info:
        load_settings(environ={"ROSTER_OIDC_PROVIDER__PORTAL_CLIENT_SECRET_SHA256": value})
    assert "portal_client_secret_sha256 must be the SHA-256" in str(info.value)
    assert value.strip() not in str(info.value)
    digest = hashlib.sha256(b"portal-secret").hexdigest()
    for good in (digest, digest.upper()):
        settings = load_settings(
            environ={"ROSTER_OIDC_PROVIDER__PORTAL_CLIENT_SECRET_SHA256": good})
        assert settings["oidc_provider"]["portal_client_secret_sha256"] == good


def test_a_webhook_lease_that_could_end_mid_post_stops_the_worker(tmp_path):
    """`roster worker` with a lease no longer than a POST plus a second (the test setup that
    let a second worker re-send) exits with the problem named; one second more is taken."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTER_")}
    env.update({"ROSTER_WEBHOOKS__LEASE_SECONDS": "6", "ROSTER_WEBHOOKS__TIMEOUT_SECONDS": "5",
                "ROSTER_DATABASE__URL": f"sqlite:///{tmp_path / 'w.db'}"})
    proc = subprocess.run([sys.executable, "-c", "from app.cli import main; main()", "worker"],
                          env=env, capture_output=True, text=True, cwd=ROOT, check=False,
                          timeout=30)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "roster: configuration error: webhooks.lease_seconds (6) must be greater than "
        "webhooks.timeout_seconds + 1 (6): a lease that ends while its POST still runs lets "
        "another worker send the event again"]
    settings = load_settings(environ={"ROSTER_WEBHOOKS__LEASE_SECONDS": "7",
                                      "ROSTER_WEBHOOKS__TIMEOUT_SECONDS": "5"})
    assert settings["webhooks"]["lease_seconds"] == 7


def test_key_files_must_hold_the_keys_they_are_named_for(tmp_path):
    """An SP key, SP certificate or provider key file that is readable but holds the wrong
    thing (a certificate for a key, an Ed25519 key for RSA) is refused at start, naming the
    setting; the right files are taken."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tests.sso.keys import make_key

    pair = make_key(tmp_path, "sp")
    ed25519 = tmp_path / "ed25519.pem"
    ed25519.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    good = {"ROSTER_SSO__SP_KEY_FILE": str(pair.key_file),
            "ROSTER_SSO__SP_CERT_FILE": str(pair.cert_file),
            "ROSTER_OIDC_PROVIDER__SIGNING_KEY_FILE": str(pair.key_file),
            "ROSTER_OIDC_PROVIDER__PUBLISHED_KEY_FILES": str(pair.key_file)}
    assert load_settings(environ=good)["sso"]["sp_key_file"] == str(pair.key_file)
    with pytest.raises(SettingsError) as info:
        load_settings(environ={**good, "ROSTER_SSO__SP_KEY_FILE": str(pair.cert_file),
                               "ROSTER_SSO__SP_CERT_FILE": str(pair.key_file),
                               "ROSTER_OIDC_PROVIDER__SIGNING_KEY_FILE": str(ed25519),
                               "ROSTER_OIDC_PROVIDER__PUBLISHED_KEY_FILES": str(ed25519)})
    assert info.value.problems == [
        f"sso.sp_key_file: {pair.cert_file} is not an unencrypted PEM RSA private key",
        f"sso.sp_cert_file: {pair.key_file} is not a PEM certificate",
        f"oidc_provider.signing_key_file: {ed25519} is not an unencrypted PEM RSA private key",
        f"oidc_provider.published_key_files: {ed25519} is not a PEM RSA key (private or "
        "public)"]


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("ROSTER_LIFECYCLE__RETENTION_DAYS", "-5", "lifecycle.retention_days must not be negative"),
    ("ROSTER_WEBHOOKS__BATCH_SIZE", "0", "webhooks.batch_size must be positive"),
    ("ROSTER_TOKENS__SCIM_TOKEN_DAYS", "-1", "tokens.scim_token_days must not be negative"),
    ("ROSTER_OIDC_PROVIDER__ACCESS_TOKEN_SECONDS", "-5",
     "oidc_provider.access_token_seconds must be positive"),
    ("ROSTER_RECORDER__MAX_PER_DIRECTORY", "-1", "recorder.max_per_directory must be positive"),
    ("ROSTER_MAPPING__MAX_LOSS_SHARE", "-1", "mapping.max_loss_share must be between 0 and 1"),
    ("ROSTER_MAPPING__MAX_LOSS_SHARE", "1.5", "mapping.max_loss_share must be between 0 and 1"),
    ("ROSTER_MAPPING__MAX_UNITS", "0", "mapping.max_units must be positive"),
    ("ROSTER_MAPPING__MAX_UNITS", "many", "ROSTER_MAPPING__MAX_UNITS must be an integer"),
    ("ROSTER_EVENTS__RETENTION_DAYS", "-1", "events.retention_days must not be negative"),
    ("ROSTER_EVENTS__PURGE_BATCH_SIZE", "0", "events.purge_batch_size must be positive"),
    ("ROSTER_EVENTS__PURGE_BATCH_SIZE", "20000", "events.purge_batch_size must be at most 10000"),
    ("ROSTER_EVENTS__RETENTION_DAYS", "thirty",
     "ROSTER_EVENTS__RETENTION_DAYS must be an integer"),
    ("ROSTER_DATABASE__SQLITE_MIN_FREE_BYTES", "-1",
     "database.sqlite_min_free_bytes must not be negative"),
    ("ROSTER_DATABASE__SQLITE_MIN_FREE_BYTES", "1MiB",
     "ROSTER_DATABASE__SQLITE_MIN_FREE_BYTES must be an integer"),
])
def test_counts_and_lifetimes_out_of_range_stop_the_start(name, value, problem):
    """Values that mean nothing (a negative retention, a batch of none, a negative token
    lifetime, a share outside 0-1) passed the start; a negative retention failed only later,
    in `roster lifecycle purge`."""
    with pytest.raises(SettingsError, match=re.escape(problem)):
        load_settings(environ={name: value})


def test_zero_is_taken_where_it_means_something():
    """A retention of 0 days (purge at once) and no clock skew are valid settings."""
    settings = load_settings(environ={"ROSTER_LIFECYCLE__RETENTION_DAYS": "0",
                                      "ROSTER_SSO__CLOCK_SKEW_SECONDS": "0"})
    assert settings["lifecycle"]["retention_days"] == 0


@pytest.mark.parametrize(("url", "problem"), [
    ("postgresql+psycopg://u:pw@127.0.0.1:notaport/db", "is not a valid database URL"),
    ("postgresql+psycopg://u:p@ss3cret@127.0.0.1/db", "percent-encode it (%40)"),
])
def test_database_urls_that_cannot_connect_are_one_line(url, problem):
    """A port that is no number was a traceback on every command (ValueError); an '@' in the
    password made the driver name part of the password as the host it could not resolve."""
    with pytest.raises(SettingsError, match=re.escape(problem)) as raised:
        load_settings(environ={"ROSTER_DATABASE__URL": url})
    assert "ss3cret" not in str(raised.value)


def test_an_environment_passed_in_brings_its_own_roster_home(tmp_path):
    """``load_settings(environ=...)`` reads the defaults of that environment's ROSTER_HOME,
    as the process would with it set (it read the process's home whatever was passed)."""
    (tmp_path / "config").mkdir()
    defaults = (ROOT / "config" / "defaults.toml").read_text()
    (tmp_path / "config" / "defaults.toml").write_text(
        defaults.replace('url = "sqlite:///var/roster.db"', 'url = "sqlite:///elsewhere.db"'))
    settings = load_settings(environ={"ROSTER_HOME": str(tmp_path)})
    assert settings["database"]["url"] == "sqlite:///elsewhere.db"
    with pytest.raises(SettingsError, match="set ROSTER_HOME"):
        load_settings(environ={"ROSTER_HOME": str(tmp_path / "nowhere")})


def test_a_secret_of_the_wrong_type_stops_create_app_without_its_value():
    """create_app refuses a secret_key that is no string, naming the setting and the type
    it must be, never the key (the error goes to the log of every process that starts)."""
    from app import create_app

    key = b"k3y-that-must-not-leak-0123456789abcdef"
    with pytest.raises(SettingsError) as info:
        create_app({"app": {"secret_key": key, "previous_secret_key": 42}})
    assert "app.secret_key must be str, got a bytes (not shown" in str(info.value)
    assert "app.previous_secret_key must be str, got a int (not shown" in str(info.value)
    assert "k3y-that-must-not-leak" not in str(info.value)
    assert "42" not in str(info.value)


def test_urls_of_the_wrong_type_stop_the_cli_without_their_credentials(tmp_path):
    """A database URL or webhook URLs written as a TOML list in ROSTER_CONFIG, and a database
    URL that does not parse, stop the real `roster` at start with lines that name the
    setting and the type, never the password or the token; other values are still shown."""
    config = tmp_path / "roster.toml"
    config.write_text(
        '[database]\nurl = ["postgresql+psycopg://roster:hunter2@db/roster"]\n'
        '[webhooks]\nurls = [5, "https://hooks.slack.com/services/T1/B1/aB3dE6gH9jK2mN5pQ8sT"]\n'
        "[server]\nworkers = \"two\"\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROSTER_")}
    env.update({"ROSTER_CONFIG": str(config), "ROSTER_SCIM__MAX_PAGE_SIZE": "lots"})
    proc = subprocess.run([sys.executable, "-c", "from app.cli import main; main()", "db",
                           "current"], env=env, capture_output=True, text=True, cwd=ROOT,
                          check=False)
    assert proc.returncode != 0
    assert "database.url must be str, got a list (not shown" in proc.stderr
    assert ("webhooks.urls must be comma-separated URLs or a JSON array of strings (not shown"
            in proc.stderr)
    assert "server.workers must be int, got 'two'" in proc.stderr
    assert "hunter2" not in proc.stderr
    assert "aB3dE6gH9jK2mN5pQ8sT" not in proc.stderr
    env.update({"ROSTER_CONFIG": "", "ROSTER_DATABASE__URL":
                "postgresql+psycopg://db:notaport/roster?password=hunter2"})
    proc = subprocess.run([sys.executable, "-c", "from app.cli import main; main()", "db",
                           "current"], env=env, capture_output=True, text=True, cwd=ROOT,
                          check=False)
    assert "ROSTER_SCIM__MAX_PAGE_SIZE must be an integer, got 'lots'" in proc.stderr
    assert "database.url is not a valid database URL: " \
        "'postgresql+psycopg://db:notaport/roster?***'" in proc.stderr
    assert "hunter2" not in proc.stderr



@pytest.mark.parametrize(("entry", "shown", "secret"), [
    ("portal.example/cb?token=R3dirT0ken9", "'portal.example/cb?token=***'", "R3dirT0ken9"),
    ("ftp://alice:Pa55w0rdX@portal.example/x", "'ftp://***@portal.example/x'", "Pa55w0rdX"),
    ("//portal.example/cb?sig=S1gValue77&next=1", "'//portal.example/cb?sig=***&next=1'",
     "S1gValue77"),
])
def test_a_bad_redirect_entry_is_named_without_its_credentials(entry, shown, secret):
    """An allow-list entry that is no absolute URL is named in the error with its userinfo
    and secret query values masked, as webhook URLs are: the line goes to every log."""
    with pytest.raises(SettingsError) as info:
        load_settings(environ={
            "ROSTER_SSO__ALLOWED_REDIRECT_URLS": f"https://portal.example/,{entry}"})
    text = str(info.value)
    assert f"sso.allowed_redirect_urls entries must be absolute http(s) URLs, got {shown}" \
        in text, text
    assert secret not in text


def test_a_key_pasted_where_its_file_goes_is_not_repeated(tmp_path):
    """A PEM key set where the setting wants its path (ROSTER_SSO__SP_KEY_FILE="$(cat
    key.pem)", a common slip) was repeated whole in 'cannot read <path>': the private key in
    the log of every process that refused to start. It is named, never shown."""
    from tests.sso.keys import make_key  # a real RSA key and certificate

    pair = make_key(tmp_path, "sp")
    pem = pair.key_file.read_text()
    body = "".join(pem.strip().splitlines()[1:-1])
    for environ in ({"ROSTER_SSO__SP_KEY_FILE": pem, "ROSTER_SSO__SP_CERT_FILE": pem},
                    {"ROSTER_OIDC_PROVIDER__SIGNING_KEY_FILE": pem},
                    {"ROSTER_OIDC_PROVIDER__PUBLISHED_KEY_FILES": f'["{body}"]'}):
        with pytest.raises(SettingsError) as info:
            load_settings(environ=environ)
        text = str(info.value)
        assert "must be the path of a PEM file" in text, text
        assert body[20:60] not in text, text


@pytest.mark.parametrize(("default", "ok"), [
    ("https://portal.example/app", True),
    ("https://portal.example/app/home?x=1", True),
    ("https://evil.example/app", False),
    ("https://portal.example/other", False),
    ("http://portal.example/app", False),
    ("https://portal.example:8443/app", False),
])
def test_the_default_redirect_must_be_allowed(database_url, default, ok):
    """sso.default_redirect_url outside sso.allowed_redirect_urls was accepted, and every
    login started without `next` was then refused (400): the start names it instead."""
    from click.testing import CliRunner

    from app.cli import cli
    from app.cli.commands import register

    register()
    result = CliRunner().invoke(cli, ["db", "current"], env={
        "ROSTER_DATABASE__URL": database_url,
        "ROSTER_SSO__ALLOWED_REDIRECT_URLS": "https://portal.example/app",
        "ROSTER_SSO__DEFAULT_REDIRECT_URL": default})
    assert (result.exit_code == 0) == ok, result.output
    if not ok:
        assert "sso.default_redirect_url must be one of sso.allowed_redirect_urls or a URL " \
               f"under one, got '{default}'" in result.output, result.output
