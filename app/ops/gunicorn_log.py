"""gunicorn's own log lines (booting, workers, signals, errors) in Roster's formats, masked.

gunicorn writes its error log with a text format of its own (``[2026-12-06 ...] [21852]
[INFO] Booting worker ...``), so a JSON deployment's stderr mixed two formats and a log
shipper parsing one object per line dropped or mangled gunicorn's lines, among them the
ones that matter most: a worker timing out or failing to boot. ``config/gunicorn.conf.py``
names :class:`JsonLogger` as gunicorn's ``logger_class`` when ``logging.format`` is json,
and :class:`TextLogger` when it is text.

Either way gunicorn's lines go through ``app.observability.redact`` like Roster's own: its
warning about a malformed request quotes the request line (``?access_token=...``) or the
header line (``Authorization: Basic ...``), its "Error handling request" line the URI, and
its access log (off by default: Roster writes its own access line per request; an operator
may turn it on with ``--access-logfile``) every request line, query included.
"""

from __future__ import annotations

import logging
from typing import Any

from gunicorn.glogging import Logger

from app.observability import JsonFormatter, RequestIdFilter, redact


class MaskingFormatter(logging.Formatter):
    """Another formatter's text (gunicorn's own line, its access or syslog format), with
    what ``redact`` masks masked: the message, the arguments and any traceback."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        """The inner formatter's line, secrets masked."""
        return redact(self.inner.format(record))


def _handlers(logger: Logger) -> list[logging.Handler]:
    return [h for log in (logger.error_log, logger.access_log) for h in log.handlers]


class JsonLogger(Logger):
    """gunicorn's logger, every handler it sets up writing through ``JsonFormatter``."""

    def setup(self, cfg: Any) -> None:
        """gunicorn's setup (run again on reload), then Roster's format on its handlers."""
        super().setup(cfg)
        formatter = JsonFormatter()
        for handler in _handlers(self):
            handler.setFormatter(formatter)
            if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
                handler.addFilter(RequestIdFilter())  # request_id: null, as Roster's


class TextLogger(Logger):
    """gunicorn's logger and its text formats, every line masked as Roster's text lines."""

    def setup(self, cfg: Any) -> None:
        """gunicorn's setup (run again on reload), then each handler's format masked."""
        super().setup(cfg)
        for handler in _handlers(self):
            inner = handler.formatter or logging.Formatter()
            if not isinstance(inner, MaskingFormatter):
                handler.setFormatter(MaskingFormatter(inner))
