"""gunicorn's own log lines (booting, workers, signals, errors) as Roster's JSON lines.

gunicorn writes its error log with a text format of its own (``[2026-12-06 ...] [21852]
[INFO] Booting worker ...``), so a JSON deployment's stderr mixed two formats and a log
shipper parsing one object per line dropped or mangled gunicorn's lines, among them the
ones that matter most: a worker timing out or failing to boot. ``config/gunicorn.conf.py``
names :class:`JsonLogger` as gunicorn's ``logger_class`` when ``logging.format`` is json.
gunicorn's access log stays off: Roster writes its own access line per request.
"""

from __future__ import annotations

from typing import Any

from gunicorn.glogging import Logger

from app.observability import JsonFormatter, RequestIdFilter


class JsonLogger(Logger):
    """gunicorn's logger, every handler it sets up writing through ``JsonFormatter``."""

    def setup(self, cfg: Any) -> None:
        """gunicorn's setup (run again on reload), then Roster's format on its handlers."""
        super().setup(cfg)
        formatter = JsonFormatter()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter)
                if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
                    handler.addFilter(RequestIdFilter())  # request_id: null, as Roster's
