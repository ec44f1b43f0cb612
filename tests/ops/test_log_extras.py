"""Extra fields of log records are redacted as the message is, in both log formats."""

from __future__ import annotations

import json
import logging

import pytest

from app.observability import JsonFormatter, TextFormatter
from tests.ops.test_ops import _root_handler

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"
PORTAL_TOKEN = "rat_S3cr3tAccessTokenValue"


@pytest.mark.parametrize("direct", [True, False], ids=["direct-line", "logging-path"])
@pytest.mark.parametrize("secret", [PORTAL_TOKEN, JWT])
def test_a_request_id_carrying_a_token_is_masked_in_the_access_line(app, client, monkeypatch,
                                                                      direct, secret):
    """A client that sends a token as its X-Request-ID (a pasted header) gets it echoed, but
    the access line's request_id field, an extra, never carries it: on the direct JSON line
    and on the logging path alike."""
    handler, stream = (_root_handler(monkeypatch) if direct
                       else _root_handler(monkeypatch, logging.NullHandler()))
    logging.getLogger("roster.access").manager._clear_cache()
    response = client.get("/healthz", headers={"X-Request-ID": secret})
    assert response.headers["X-Request-ID"] == secret
    handler.flush()
    text = stream.getvalue()
    access = [json.loads(line) for line in text.splitlines()
              if json.loads(line)["logger"] == "roster.access"]
    assert [a["route"] for a in access] == ["/healthz"]
    assert secret not in text
    assert access[0]["request_id"] == "[REDACTED]"


def _record(**fields: object) -> logging.LogRecord:
    """A record as ``log.info("...", extra=fields)`` makes it, through the logging module."""
    captured: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    logger = logging.getLogger("roster.test.extras")
    keep = Keep()
    logger.addHandler(keep)
    logger.propagate, logger.level = False, logging.INFO
    try:
        logger.info("delivery failed", extra=fields)
    finally:
        logger.removeHandler(keep)
        logger.propagate = True
    return captured[0]


SECRETS = ("hunter2-client-secret", "SlackHookPassw0rd", "rss_OpSecretValue", JWT,
           PORTAL_TOKEN, "plainpassword")


def test_extra_fields_are_masked_in_json_lines():
    """Secrets in extras (by name, by shape, in nested dicts and lists, in a URL's userinfo,
    in an object's str) are masked; harmless fields are kept as they were."""
    record = _record(client_secret="hunter2-client-secret", status=502, attempts=3,
                     endpoint="https://hook:SlackHookPassw0rd@hooks.example/in",
                     detail={"upstream": {"id_token": JWT, "tokens": 2},
                             "keys": ["rss_OpSecretValue", "kept"]},
                     error=ValueError(f"refused {PORTAL_TOKEN}"), password="plainpassword")
    line = JsonFormatter().format(record)
    for secret in SECRETS:
        assert secret not in line
    out = json.loads(line)
    assert out["client_secret"] == "[REDACTED]"
    assert out["password"] == "[REDACTED]"
    assert out["endpoint"] == "https://[REDACTED]@hooks.example/in"
    assert out["detail"] == {"upstream": {"id_token": "[REDACTED]", "tokens": 2},
                             "keys": ["[REDACTED]", "kept"]}
    assert out["status"] == 502
    assert out["attempts"] == 3


def test_extra_fields_a_text_format_names_are_masked():
    """The text format masks the extras its format string names, by name too (a secret
    the patterns alone would not recognise)."""
    record = _record(client_secret="hunter2-client-secret", password="plainpassword",
                     endpoint="https://hook:SlackHookPassw0rd@hooks.example/in",
                     detail={"id_token": JWT, "keys": ["rss_OpSecretValue"]}, status=502)
    line = TextFormatter("%(levelname)s %(message)s %(client_secret)s %(password)s "
                         "%(endpoint)s %(detail)s %(status)s").format(record)
    for secret in SECRETS:
        assert secret not in line
    assert line.endswith(" 502")
    assert "hooks.example/in" in line
