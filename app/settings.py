"""Settings: config/defaults.toml -> $ROSTER_CONFIG -> ROSTER_* env -> overrides.

Every key must exist in ``config/defaults.toml``; its default value fixes its type.
Problems are collected and reported together, one line each, by :class:`SettingsError`.
"""

from __future__ import annotations

import copy
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from app.settings_checks import (
    base_url_problems,
    bind_problems,
    database_url_problems,
    default_redirect_problems,
    joined_webhook_urls,
    named_source,
    one_underscore_problem,
    ratelimit_problems,
    upper_bound_problems,
    url_list_problems,
    webhook_url_problems,
)
from app.settings_keys import key_problems


def _find_root(environ: Mapping[str, str] = os.environ) -> Path:
    """Roster's home, holding config/ and migrations/: $ROSTER_HOME, else the checkout this
    package runs from, else the working directory (a package installed into site-packages,
    as in the Docker image, has neither beside it)."""
    if home := environ.get("ROSTER_HOME"):
        return Path(home).expanduser().resolve()
    checkout = Path(__file__).resolve().parent.parent
    for candidate in (checkout, Path.cwd()):
        if (candidate / "config" / "defaults.toml").is_file():
            return candidate
    return checkout


ROOT = _find_root()
DEFAULTS_FILE = ROOT / "config" / "defaults.toml"
ENV_PREFIX = "ROSTER_"
SECRET_KEYS = frozenset({("app", "secret_key"), ("app", "previous_secret_key"),
                         ("signing", "private_key"), ("webhooks", "secret"),
                         ("webhooks", "previous_secret")})
# Settings whose value may hold a credential without being a SECRET_KEYS secret: a database
# URL's password, a webhook URL's token, a digest of a secret. A problem with one of these
# (or with any name like a credential) names the setting and what it must be, never its value.
_MAY_HOLD_SECRETS = frozenset({("database", "url"), ("webhooks", "urls")})
_SECRET_NAME = ("secret", "password", "token", "credential", "private", "key", "url")
ENVIRONMENTS = ("development", "test", "production")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# The largest events.purge_batch_size: rows deleted in one purge transaction.
MAX_PURGE_BATCH = 10000

Settings = dict[str, dict[str, Any]]


class SettingsError(SystemExit):
    """Invalid configuration; exits with one line per problem and no traceback."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"roster: configuration error: {p}" for p in problems))


def load_settings(
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge every source in precedence order and validate the result."""
    # An environment passed in is the whole of it: its ROSTER_HOME too, not the process's.
    defaults_file = DEFAULTS_FILE if environ is None else (
        _find_root(environ) / "config" / "defaults.toml")
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    settings: Settings = _read_toml(defaults_file, problems)
    if problems:  # every key and type is judged against this file: nothing to go on
        raise SettingsError([_no_defaults(problems[0])])
    # An environment variable is read as its default's type, not as whatever a config file
    # put there: a file's `timeout = "x"` made the ROSTER_SERVER__TIMEOUT=30 that `roster
    # serve` exports a string, and the start was refused for "got '30'".
    types = copy.deepcopy(settings)
    if config_file := environ.get("ROSTER_CONFIG"):
        _merge(settings, _read_toml(Path(config_file), problems), config_file, problems)
    named: dict[tuple[str, str], str] = {}  # (section, key) -> the variable that set it
    _merge(settings, _from_environ(environ, types, problems, named), "environment", problems,
           names=named)
    if overrides:
        _merge(settings, overrides, "overrides", problems, allow_secrets=True)
    problems.extend(joined_webhook_urls(settings["webhooks"]))
    problems.extend(validate(settings))
    if problems:
        raise SettingsError(problems)
    return settings


def _no_defaults(problem: str) -> str:
    """The missing defaults file, and how to point Roster at its home."""
    return (f"{problem}: set ROSTER_HOME to the directory holding Roster's config/ and "
            "migrations/ (/srv/roster in the Docker image), or run roster from there")


def _read_toml(path: Path, problems: list[str]) -> Settings:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        problems.append(f"config file {path} does not exist")
    except OSError as exc:  # a directory, a file this user may not read
        problems.append(f"config file {path} cannot be read: {exc.strerror}")
    except UnicodeDecodeError as exc:  # TOML is UTF-8 (TOML v1.0.0, Spec); tomllib decodes
        line = exc.object[:exc.start].count(b"\n") + 1
        problems.append(f"config file {path} is not valid TOML: not UTF-8 (line {line})")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"config file {path} is not valid TOML: {exc}")
    return {}


def _merge(
    base: Settings,
    extra: Mapping[str, Any],
    source: str,
    problems: list[str],
    allow_secrets: bool = False,
    names: Mapping[tuple[str, str], str] | None = None,
) -> None:
    """Overlay ``extra`` on ``base``; unknown keys and secrets in files are problems, with
    the environment variables that gave them (``names``)."""
    for section, values in extra.items():
        if section not in base:
            problems.append(f"unknown section [{section}] in "
                            f"{named_source(source, names, section)}")
            continue
        if not isinstance(values, Mapping):
            problems.append(f"[{section}] in {source} must be a table")
            continue
        for key, value in values.items():
            if key not in base[section]:
                problems.append(f"unknown key {section}.{key} in "
                                f"{named_source(source, names, section, key)}")
            elif (section, key) in SECRET_KEYS and source not in ("environment", "overrides"):
                problems.append(
                    f"{section}.{key} is a secret and may only come from the environment "
                    f"(ROSTER_{section.upper()}__{key.upper()} or ..._FILE), not {source}"
                )
            else:
                base[section][key] = copy.deepcopy(value)


def _shown(section: str, key: str, value: Any, typed: bool = True) -> str:
    """``got <value>`` for a problem with a setting, or only its type (``typed``) for a
    setting that is or may hold a secret: a start refused for a bad type left it in the log."""
    if ((section, key) in SECRET_KEYS or (section, key) in _MAY_HOLD_SECRETS
            or any(word in key for word in _SECRET_NAME)):
        kind = f"a {type(value).__name__} " if typed else "a value "
        return f"got {kind}(not shown: {section}.{key} may hold a secret)"
    return f"got {value!r}"


def _from_environ(
    environ: Mapping[str, str], defaults: Settings, problems: list[str],
    named: dict[tuple[str, str], str],
) -> Settings:
    """Read ROSTER_SECTION__KEY (and ROSTER_SECTION__KEY_FILE) into typed values; ``named``
    gets the variable read for each (set twice, X and X_FILE: which one would win?)."""
    out: Settings = {}
    for name, raw in sorted(environ.items(), key=lambda item: (not item[1], item[0])):
        if not name.startswith(ENV_PREFIX) or name == "ROSTER_CONFIG":
            continue
        if "__" not in name:
            if problem := one_underscore_problem(name, defaults):
                problems.append(problem)
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        from_file = key.endswith("_file") and key[: -len("_file")] in defaults.get(section, {})
        key = key[: -len("_file")] if from_file else key
        if (first := named.setdefault((section, key), name)) != name:
            if raw:  # an empty one (a template's `ROSTER_APP__SECRET_KEY=`) is no second
                problems.append(f"{first} and {name} both set {section}.{key}: set only one")
            continue
        if from_file and not raw:  # Path("") is the working directory: "Is a directory"
            problems.append(f"{name} is empty: name the file that holds {section}.{key}, or "
                            "unset the variable")
            continue
        if from_file:
            try:
                raw = Path(raw).read_text().strip()
            except OSError as exc:
                problems.append(f"{name}: cannot read secret file: {exc.strerror}")
                continue
            except UnicodeDecodeError:  # its bytes are not repeated: they may be the secret
                problems.append(f"{name}: the file is not UTF-8 text (a binary key? give "
                                "the PEM or the text itself)")
                continue
        default = defaults.get(section, {}).get(key)
        value = _coerce(raw, default, name, problems, _shown(section, key, raw, typed=False))
        out.setdefault(section, {})[key] = value
    return out


def _coerce(raw: str, default: Any, name: str, problems: list[str], got: str) -> Any:
    """``raw`` as the type of ``default``; a problem (ending in ``got``) when it is not."""
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        problems.append(f"{name} must be true or false, {got}")
        return default
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            problems.append(f"{name} must be an integer, {got}")
            return default
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            problems.append(f"{name} must be a number, {got}")
            return default
    if isinstance(default, list):
        # Lists come as comma-separated values, ROSTER_X__Y="a,b,c", or a JSON array: read
        # as one item, '["https://portal.example/"]' refused every redirect to the portal.
        if not raw.lstrip().startswith("["):
            return [item.strip() for item in raw.split(",") if item.strip()]
        try:
            items = json.loads(raw)
        except ValueError:
            items = None
        if isinstance(items, list) and all(isinstance(item, str) for item in items):
            return [item.strip() for item in items if item.strip()]
        problems.append(f"{name} must be comma-separated values or a JSON array of strings, "
                        f"{got}")
        return default
    return raw


def validate(settings: Settings) -> list[str]:
    """Return one human line per invalid value (types, ranges, URLs, secrets)."""
    reference = _read_toml(DEFAULTS_FILE, [])
    problems = [
        f"{section}.{key} must be {type(default).__name__}, {_shown(section, key, value)}"
        for section, values in reference.items()
        for key, default in values.items()
        if not _same_type(settings[section][key], default)
        for value in [settings[section][key]]
    ]
    if problems:
        return problems
    app, db = settings["app"], settings["database"]
    if app["env"] not in ENVIRONMENTS:
        problems.append(f"app.env must be one of {', '.join(ENVIRONMENTS)}, got {app['env']!r}")
    if app["env"] == "production" and len(app["secret_key"]) < 32:
        problems.append(
            "app.secret_key is required in production (at least 32 characters); "
            "set ROSTER_APP__SECRET_KEY or ROSTER_APP__SECRET_KEY_FILE"
        )
    if app["env"] == "production" and not settings["signing"]["private_key"]:
        problems.append(
            "signing.private_key is required in production (Ed25519 PEM for receipts and "
            "checkpoints); set ROSTER_SIGNING__PRIVATE_KEY or ROSTER_SIGNING__PRIVATE_KEY_FILE"
        )
    if settings["webhooks"]["urls"] and not settings["webhooks"]["secret"]:
        problems.append("webhooks.secret is required when webhooks.urls is set "
                        "(ROSTER_WEBHOOKS__SECRET or ..._FILE)")
    if settings["logging"]["level"] not in LOG_LEVELS:
        problems.append(f"logging.level must be one of {', '.join(LOG_LEVELS)}")
    if settings["logging"]["format"] not in ("json", "text"):
        problems.append("logging.format must be json or text")
    if not 0 <= settings["logging"]["flush_ms"] <= 5000:
        problems.append("logging.flush_ms must be between 0 and 5000")
    problems.extend(database_url_problems(db["url"]))
    problems.extend(_positive(settings))
    if settings["scim"]["default_page_size"] > settings["scim"]["max_page_size"]:
        problems.append("scim.default_page_size must not exceed scim.max_page_size")
    if not 60 <= settings["oauth"]["access_token_minutes"] <= 360:
        problems.append("oauth.access_token_minutes must be between 60 and 360")
    if settings["sso"]["metadata_refresh_hours"] < 0:
        problems.append("sso.metadata_refresh_hours must be 0 (off) or positive")
    if settings["sso"]["idp_failure_backoff_max_seconds"] < \
            settings["sso"]["idp_failure_backoff_seconds"]:
        problems.append("sso.idp_failure_backoff_max_seconds must not be less than "
                        "sso.idp_failure_backoff_seconds")
    if not 0 <= settings["server"]["threads"] <= 64:
        problems.append("server.threads must be between 0 (by database) and 64")
    if not 0 <= settings["app"]["trusted_proxies"] <= 10:
        problems.append("app.trusted_proxies must be between 0 and 10")
    if settings["scim"]["bulk_max_payload_bytes"] > settings["app"]["max_body_bytes"]:
        # Larger bulk bodies would be refused before Bulk sees them: keep the advert true.
        problems.append("scim.bulk_max_payload_bytes must not exceed app.max_body_bytes")
    problems.extend(base_url_problems(app["base_url"]))
    problems.extend(bind_problems(settings["server"]["bind"]))
    problems.extend(webhook_url_problems(settings["webhooks"]["urls"]))
    problems.extend(_webhook_lease_problems(settings["webhooks"]))
    problems.extend(url_list_problems("sso.allowed_redirect_urls",
                                      settings["sso"]["allowed_redirect_urls"]))
    problems.extend(default_redirect_problems(settings["sso"]["default_redirect_url"],
                                              settings["sso"]["allowed_redirect_urls"]))
    problems.extend(ratelimit_problems(settings["ratelimit"]))
    problems.extend(key_problems(settings))
    return problems


def _webhook_lease_problems(webhooks: dict[str, Any]) -> list[str]:
    """A delivery's claim must outlast the POST it covers, with a second to record the result:
    a lease that ran out mid-POST let another worker send the same event again."""
    lease, timeout = webhooks["lease_seconds"], webhooks["timeout_seconds"]
    if lease > timeout + 1:
        return []
    return [f"webhooks.lease_seconds ({lease}) must be greater than webhooks.timeout_seconds "
            f"+ 1 ({timeout + 1}): a lease that ends while its POST still runs lets another "
            "worker send the event again"]


def worker_threads(settings: Settings) -> int:
    """Request threads per gunicorn worker: ``server.threads``, or by database when 0.

    SQLite lets one writer in at a time; threads of one worker share its GIL, so a thread
    holding the write lock waits for the GIL after each SQLite call while its siblings run,
    and every writer of every worker waits with it. One thread per worker measured 25-80 %
    more creates per second and a lower p99 (bench/README.md). PostgreSQL has no single
    write lock, and its threads overlap network round trips.
    """
    threads = settings["server"]["threads"]
    if threads:
        return int(threads)
    return 1 if make_url(settings["database"]["url"]).get_backend_name() == "sqlite" else 4


def _same_type(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def _positive(settings: Settings) -> list[str]:
    """Counts, sizes and lifetimes that mean nothing at 0 or below, and those that may be 0
    but never negative: a negative retention passed the start and failed only later, in
    `roster lifecycle purge`; a batch of 0 deliveries sent nothing, without a word."""
    keys = [
        ("app", "max_body_bytes"), ("database", "pool_size"), ("server", "workers"),
        ("server", "timeout"), ("server", "read_timeout"), ("server", "switch_interval_us"),
        ("scim", "max_page_size"),
        ("scim", "default_page_size"), ("scim", "max_filter_results"),
        ("tokens", "max_valid_per_directory"),
        ("recorder", "max_per_directory"), ("recorder", "max_body_bytes"),
        ("recorder", "prune_every"), ("webhooks", "batch_size"),
        ("webhooks", "timeout_seconds"), ("sso", "request_ttl_seconds"),
        ("oidc_provider", "access_token_seconds"), ("oidc_provider", "id_token_seconds"),
        ("oidc_provider", "refresh_token_seconds"),
        ("oidc_provider", "authorization_code_seconds"),
        ("oidc_provider", "backchannel_timeout_seconds"), ("events", "purge_batch_size"),
        ("scim", "bulk_max_operations"), ("scim", "bulk_max_payload_bytes"),
        ("lifecycle", "mass_window_seconds"), ("lifecycle", "mass_count"),
        ("webhooks", "retry_base_seconds"), ("webhooks", "retry_max_seconds"),
        ("sso", "idp_failure_backoff_seconds"), ("sso", "idp_failure_backoff_max_seconds"),
        ("sso", "idp_forced_refresh_seconds"), ("mapping", "max_units"),
    ]
    zero_or_more = [
        ("lifecycle", "retention_days"), ("lifecycle", "deprovisioned_retention_days"),
        ("recorder", "max_age_days"),
        ("webhooks", "dead_after_seconds"), ("webhooks", "poll_interval_ms"),
        ("sso", "clock_skew_seconds"), ("sso", "trace_retention_days"),
        ("sso", "idp_stale_if_error_seconds"),
        ("mapping", "write_wait_ms"),
        ("events", "retention_days"),
        # 0: a token that never expires (tokens.issue_token); a checkpoint never written.
        ("tokens", "scim_token_days"), ("signing", "checkpoint_interval_seconds"),
        ("lifecycle", "mass_min_count"), ("database", "sqlite_busy_timeout_ms"),
        ("database", "sqlite_min_free_bytes"),  # 0: /readyz never says the disk is full
    ]
    problems = [f"{s}.{k} must be positive" for s, k in keys if settings[s][k] <= 0]
    problems += [f"{s}.{k} must not be negative" for s, k in zero_or_more
                 if settings[s][k] < 0]
    if settings["events"]["purge_batch_size"] > MAX_PURGE_BATCH:
        # One batch is one transaction: a larger one holds its row locks, and SQLite's
        # write lock, for long (an outbox reader or a SCIM write waits behind it).
        problems.append(f"events.purge_batch_size must be at most {MAX_PURGE_BATCH}")
    if not 0 <= settings["lifecycle"]["mass_share_percent"] <= 100:
        problems.append("lifecycle.mass_share_percent must be between 0 and 100")
    problems.extend(upper_bound_problems(settings))
    if not 0 <= settings["mapping"]["max_loss_share"] <= 1:
        problems.append("mapping.max_loss_share must be between 0 and 1 (a share of users)")
    return problems
